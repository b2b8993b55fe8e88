// Command primes counts the primes in a half-open range; a gridnode job
// module written with the Go guest SDK.
//
// Input: "lo hi" (decimal, separated by blanks, optional trailing newline)
// with 0 <= lo <= hi <= 1e9. Output: "lo hi count\n", where count is the
// number of primes p with lo <= p < hi. Bad input exits 1 with the reason
// on stderr. Progress is reported as the sieve advances.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o primes.wasm .
package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gridnode/gridnode/sdk/guest"
)

const maxHi = 1_000_000_000

func main() {
	guest.Run(func(input []byte) ([]byte, error) {
		lo, hi, err := parse(string(input))
		if err != nil {
			return nil, err
		}
		n := count(lo, hi, guest.Progress)
		return fmt.Appendf(nil, "%d %d %d\n", lo, hi, n), nil
	})
}

func parse(s string) (lo, hi uint64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("primes: want input \"lo hi\", got %q", truncate(s))
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 64)
	hi, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || lo > hi || hi > maxHi {
		return 0, 0, fmt.Errorf("primes: want decimal \"lo hi\" with 0 <= lo <= hi <= %d, got %q", maxHi, truncate(s))
	}
	return lo, hi, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

const segment = 1 << 16

// count returns the number of primes in [lo, hi) with a segmented sieve of
// Eratosthenes, calling progress after each segment.
func count(lo, hi uint64, progress func(float64)) uint64 {
	if lo < 2 {
		lo = 2
	}
	if hi <= lo {
		progress(1)
		return 0
	}
	base := smallPrimes(isqrt(hi - 1))
	composite := make([]bool, segment)
	var n uint64
	for start := lo; start < hi; start += segment {
		end := min(start+segment, hi)
		seg := composite[:end-start]
		clear(seg)
		for _, p := range base {
			if p*p >= end {
				break
			}
			m := max(p*p, (start+p-1)/p*p)
			for ; m < end; m += p {
				seg[m-start] = true
			}
		}
		for _, c := range seg {
			if !c {
				n++
			}
		}
		progress(float64(end-lo) / float64(hi-lo))
	}
	return n
}

// smallPrimes returns the primes <= n.
func smallPrimes(n uint64) []uint64 {
	composite := make([]bool, n+1)
	var ps []uint64
	for i := uint64(2); i <= n; i++ {
		if composite[i] {
			continue
		}
		ps = append(ps, i)
		for j := i * i; j <= n; j += i {
			composite[j] = true
		}
	}
	return ps
}

func isqrt(n uint64) uint64 {
	r := uint64(0)
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}
