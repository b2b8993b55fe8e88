package plugins

import (
	"context"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// Limits on the child items one execution may emit with grid.emit. Together
// they keep the children and the parent's output inside one 8 MiB wire frame.
const (
	MaxEmitItems = 1024    // children per execution
	MaxEmitBytes = 4 << 20 // total bytes of all children's inputs per execution
	MaxEmitInput = 1 << 20 // bytes of one child's input
)

// grid.emit return codes, seen by the guest. They depend only on the guest's
// own calls, so honest duplicates see the same codes.
const (
	emitOK          uint32 = 0
	emitTooMany     uint32 = 1 // MaxEmitItems children already emitted
	emitTooLarge    uint32 = 2 // the input exceeds MaxEmitInput, or the total would exceed MaxEmitBytes
	emitOutOfMemory uint32 = 3 // [ptr, ptr+len) is not inside the guest's memory
)

// emitted is the staged child items of one execution. The guest appends to
// it from grid.emit; a worker may snapshot it from another goroutine when it
// abandons a run, hence the mutex.
type emitted struct {
	mu    sync.Mutex
	items [][]byte
	bytes int
}

// add applies the limits in a fixed order (count, size, bounds) so that a
// call that breaks several of them always gets the same code.
func (e *emitted) add(mem api.Memory, ptr, size uint32) uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.items) >= MaxEmitItems {
		return emitTooMany
	}
	if size > MaxEmitInput || e.bytes+int(size) > MaxEmitBytes {
		return emitTooLarge
	}
	if mem == nil {
		return emitOutOfMemory
	}
	b, ok := mem.Read(ptr, size) // false unless ptr+size <= memory size (no wrap-around)
	if !ok {
		return emitOutOfMemory
	}
	e.items = append(e.items, slices.Clone(b)) // b aliases guest memory, which outlives neither this call nor the instance
	e.bytes += int(size)
	return emitOK
}

// list returns the children emitted so far, or nil.
func (e *emitted) list() [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.items) == 0 {
		return nil
	}
	return slices.Clone(e.items)
}

func hostEmit(ctx context.Context, mod api.Module, ptr, size uint32) uint32 {
	st, _ := ctx.Value(execStateKey{}).(*execState)
	if st == nil {
		return emitTooMany // not an execution of ours (cannot happen): emit nothing
	}
	return st.emitted.add(mod.Memory(), ptr, size)
}
