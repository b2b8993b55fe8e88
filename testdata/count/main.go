// Command count is a long item that checkpoints with the guest SDK, to test
// resuming an execution from a checkpoint.
//
// Input "STEPS EVERY" (decimal; one trailing "\n" or "\r\n" is ignored).
// State x starts as STEPS. Each step applies 100,000 rounds of
//
//	x = x*6364136223846793005 + 1442695040888963407
//	x ^= x >> 29
//
// (uint64, wrapping: the mix of work.wasm), then reports progress
// step/STEPS and, every EVERY steps (never when EVERY is 0), saves the
// checkpoint (step, x) as two little-endian uint64s. At start it loads a
// checkpoint if there is one, writes "resumed at step S\n" to stderr and
// continues from it. Output: x as 16 lowercase hex digits + "\n", whether or
// not it resumed (testdata.CountOutput is its native twin). Bad input or a
// bad checkpoint exits 1 with the reason on stderr.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o count.wasm .
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/gridnode/gridnode/sdk/guest"
)

const roundsPerStep = 100_000

func main() {
	guest.Run(func(input []byte) ([]byte, error) {
		s := strings.TrimSuffix(strings.TrimSuffix(string(input), "\n"), "\r")
		a, b, _ := strings.Cut(s, " ")
		steps, err1 := strconv.ParseUint(a, 10, 64)
		every, err2 := strconv.ParseUint(b, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("count: want input \"STEPS EVERY\" (decimal), got %.64q", s)
		}
		step, x := uint64(0), steps
		if data, ok, err := guest.LoadCheckpoint(); err != nil {
			return nil, fmt.Errorf("count: %w", err)
		} else if ok {
			if len(data) != 16 {
				return nil, fmt.Errorf("count: checkpoint of %d bytes, want 16", len(data))
			}
			step, x = binary.LittleEndian.Uint64(data), binary.LittleEndian.Uint64(data[8:])
			if step > steps {
				return nil, fmt.Errorf("count: checkpoint at step %d of %d", step, steps)
			}
			fmt.Fprintf(os.Stderr, "resumed at step %d\n", step)
		}
		var ckpt [16]byte
		for step < steps {
			for range roundsPerStep {
				x = x*6364136223846793005 + 1442695040888963407
				x ^= x >> 29
			}
			step++
			guest.Progress(float64(step) / float64(steps))
			if every != 0 && step%every == 0 {
				binary.LittleEndian.PutUint64(ckpt[:], step)
				binary.LittleEndian.PutUint64(ckpt[8:], x)
				if err := guest.SaveCheckpoint(ckpt[:]); err != nil {
					return nil, fmt.Errorf("count: step %d: %w", step, err)
				}
			}
		}
		return fmt.Appendf(nil, "%016x\n", x), nil
	})
}
