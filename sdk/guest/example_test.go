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

// A long item that checkpoints: it saves its state every 1000 steps and, when
// the grid resumes it from a checkpoint, continues from there. The output
// does not depend on whether it resumed. Outside the grid, checkpoints are
// kept in memory, so the job function can be tested natively like this.
func ExampleSaveCheckpoint() {
	sum := func(n uint64) ([]byte, error) {
		var i, total uint64
		if data, ok, err := guest.LoadCheckpoint(); err != nil {
			return nil, err
		} else if ok {
			_, err := fmt.Sscanf(string(data), "%d %d", &i, &total)
			if err != nil {
				return nil, fmt.Errorf("bad checkpoint %q: %w", data, err)
			}
			fmt.Println("resumed at", i)
		}
		for ; i < n; i++ {
			if i%1000 == 0 {
				if err := guest.SaveCheckpoint(fmt.Appendf(nil, "%d %d", i, total)); err != nil {
					return nil, err
				}
			}
			total += i
		}
		return fmt.Appendf(nil, "%d", total), nil
	}
	first, _ := sum(2500)  // saves at 0, 1000 and 2000
	second, _ := sum(2500) // as if the grid resumed it
	fmt.Println(string(first), string(second))
	// Output:
	// resumed at 2000
	// 3123750 3123750
}
