package guest

import (
	"errors"
	"fmt"
)

// The grid's limits on the children of one execution (plugins.MaxEmitItems,
// MaxEmitBytes and MaxEmitInput; repeated here because this package is
// compiled to wasm and must not import the host).
const (
	maxEmitItems = 1024
	maxEmitBytes = 4 << 20
	maxEmitInput = 1 << 20
)

// Emit adds a child work item with the given input to the job that runs this
// module. The child is staged with this execution's outcome: it joins the job
// only if the execution exits 0 and its outcome wins the item's vote, so a
// failed or outvoted execution adds nothing. Children keep the order of the
// Emit calls and count in the outcome's digest, so honest duplicates must emit
// the same children.
//
// One execution may emit at most 1024 children, each input at most 1 MiB and
// all of them at most 4 MiB together; a call over a limit returns an error
// naming it and emits nothing (earlier children stay). Outside wasip1 Emit
// always returns an error: children exist only inside the grid.
func Emit(input []byte) error {
	return emitError(emit(input), len(input))
}

// emitError maps grid.emit's return code for an input of n bytes to an error.
func emitError(code uint32, n int) error {
	switch code {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("guest: emit: more than %d children in one execution", maxEmitItems)
	case 2:
		if n > maxEmitInput {
			return fmt.Errorf("guest: emit: child input of %d bytes exceeds the %d byte (1 MiB) limit per child", n, maxEmitInput)
		}
		return fmt.Errorf("guest: emit: child input of %d bytes would take this execution's children past %d bytes (4 MiB) in total", n, maxEmitBytes)
	case 3:
		return errors.New("guest: emit: the input is outside the module's memory")
	case notInGrid:
		return errors.New("guest: emit: Emit works only inside the grid (a wasip1 module run by gridnode)")
	}
	return fmt.Errorf("guest: emit: the host returned unknown code %d", code)
}

// notInGrid is emit's code outside wasip1; the host never returns it.
const notInGrid = ^uint32(0)
