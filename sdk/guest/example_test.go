package guest_test

import (
	"bytes"
	"fmt"

	"github.com/gridnode/gridnode/sdk/guest"
)

// A module that upper-cases its input. Run reads stdin, so this example is
// compiled but not run by go test.
func ExampleRun() {
	guest.Run(func(input []byte) ([]byte, error) {
		guest.Logf("got %d bytes", len(input))
		guest.Progress(1)
		return bytes.ToUpper(input), nil
	})
}

// A module that fans out: the item "split lo hi" emits one child item
// "count a b" per 1000 numbers of [lo, hi); each child is run as an item of
// the same job, by the same module. The children join the job only if this
// execution exits 0 and its outcome wins the vote.
func ExampleEmit() {
	guest.Run(func(input []byte) ([]byte, error) {
		var lo, hi int
		if _, err := fmt.Sscanf(string(input), "split %d %d", &lo, &hi); err != nil {
			return childWork(input) // a child item
		}
		for a := lo; a < hi; a += 1000 {
			if err := guest.Emit(fmt.Appendf(nil, "count %d %d", a, min(a+1000, hi))); err != nil {
				return nil, err // names the limit hit, e.g. more than 1024 children
			}
		}
		return fmt.Appendf(nil, "split %d %d\n", lo, hi), nil
	})
}

// childWork stands for the real work of a child item.
func childWork(input []byte) ([]byte, error) { return append(input, '\n'), nil }
