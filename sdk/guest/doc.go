// Package guest helps job authors write gridnode job modules in Go.
//
// A job module is a WASI preview1 command: it reads one item's input on
// stdin, writes the item's output on stdout and its log on stderr, and its
// exit code is part of the outcome. Any wasm32-wasip1 program follows that
// contract without this package; guest only removes the boilerplate and
// wraps the optional host import module "grid".
//
// Build a module with
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o job.wasm .
//
// A minimal module that upper-cases its input:
//
//	package main
//
//	import (
//		"bytes"
//
//		"github.com/gridnode/gridnode/sdk/guest"
//	)
//
//	func main() {
//		guest.Run(func(input []byte) ([]byte, error) {
//			guest.Logf("got %d bytes", len(input))
//			return bytes.ToUpper(input), nil
//		})
//	}
//
// By default the grid runs modules deterministically: the clock is virtual
// and randomness is seeded from the item ID, so honest duplicates produce
// identical bytes. Do not rely on wall-clock time or true randomness unless
// the job opts out of determinism.
//
// [Emit] adds a child work item to the same job. Children are staged with
// the execution's outcome: they join the job only if the module exits 0 and
// its outcome wins the item's vote. At most 1024 children per execution,
// 1 MiB per child input and 4 MiB in total.
//
// [SaveCheckpoint] and [LoadCheckpoint] let a long item survive an
// interruption: a module saves its state now and then, and an execution
// that the grid resumes from a checkpoint loads it and continues instead of
// starting over. The output must not depend on whether it resumed.
//
// Calling [Progress], [Emit], [SaveCheckpoint] or [LoadCheckpoint] makes the
// module import grid.progress, grid.emit, grid.checkpoint_save or
// grid.checkpoint_load. Such a module runs only on a host that provides those imports
// (a gridnode agent does); a plain WASI runtime will refuse to instantiate
// it. Modules that call neither have no "grid" imports at all.
//
// This package never touches the network or the host beyond stdin, stdout,
// stderr, args, env and the grid imports. It compiles on every platform so
// that job code can be unit-tested natively; there Progress does nothing,
// Emit returns an error and checkpoints are kept in process memory.
package guest
