package plugins

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// limitAllocator backs linear memory with Go memory and refuses to grow it
// past limit. A refused grow makes memory.grow return -1 inside the guest; hit
// records it so the outcome can be classified as memory_limit.
//
// Using an allocator rather than RuntimeConfig.WithMemoryLimitPages keeps one
// runtime (and one compiled module) per process for every limit.
type limitAllocator struct {
	limit uint64
	hit   atomic.Bool
}

func (a *limitAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &limitedMemory{a: a, max: min(maxBytes, a.limit), capHint: capacity}
}

type limitedMemory struct {
	a       *limitAllocator
	max     uint64
	capHint uint64
	buf     []byte
}

func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		m.a.hit.Store(true)
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Grow geometrically (bounded by the limit) so a module growing one page at
	// a time does not copy its whole memory every time.
	c := max(size, min(uint64(cap(m.buf))*2, m.max), min(m.capHint, m.max))
	nb := make([]byte, size, c)
	copy(nb, m.buf)
	m.buf = nb
	return m.buf
}

func (m *limitedMemory) Free() { m.buf = nil }
