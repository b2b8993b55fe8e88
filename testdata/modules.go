// Package testdata embeds the prebuilt job modules that sit beside their
// sources in this directory, so that the demo, the benchmarks and tests in
// any package can run them without a WebAssembly toolchain. Rebuild them
// with ./build.sh.
package testdata

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strconv"
)

// Example and benchmark modules.
var (
	//go:embed primes/primes.wasm
	Primes []byte // Go, guest SDK: "lo hi" → "lo hi count\n", primes in [lo, hi)
	//go:embed echo/echo.wasm
	Echo []byte // WAT: stdin → stdout
	//go:embed work/work.wasm
	Work []byte // WAT: decimal N → N rounds of integer mixing (see WorkOutput)
	//go:embed emit/emit.wasm
	Emit []byte // Go, guest SDK: "parent N" emits children "child 0" … "child N-1"; "child I" → EmitChildOutput(I)
	//go:embed count/count.wasm
	Count []byte // Go, guest SDK: "STEPS EVERY" → CountOutput(STEPS), checkpointing every EVERY steps and resuming from a checkpoint
)

// EmitChildOutput is what emit.wasm prints for input "child i": "child i ",
// the first 8 bytes of sha256("child i") in lowercase hex, and "\n".
func EmitChildOutput(i int) string {
	in := "child " + strconv.Itoa(i)
	sum := sha256.Sum256([]byte(in))
	return in + " " + hex.EncodeToString(sum[:8]) + "\n"
}

// WorkOutput is what work.wasm prints for input n: the native twin of its
// mixing function, so that a test can check every byte of its output.
func WorkOutput(n uint64) string {
	const hex = "0123456789abcdef"
	x := n
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
	}
	var b [17]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[x&15]
		x >>= 4
	}
	b[16] = '\n'
	return string(b[:])
}

// CountRoundsPerStep is how many rounds of the mix count.wasm applies per step.
const CountRoundsPerStep = 100_000

// CountOutput is what count.wasm prints for STEPS = steps, whatever EVERY is
// and whether or not it resumed: x starts as steps and takes steps ×
// CountRoundsPerStep rounds of WorkOutput's mix.
func CountOutput(steps uint64) string {
	x := steps
	for range steps * CountRoundsPerStep {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
	}
	return fmt.Sprintf("%016x\n", x)
}
