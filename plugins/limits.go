package plugins

import (
	"fmt"
	"time"
)

// Limits bound one execution. A zero field means "the default".
type Limits struct {
	MemoryBytes uint64        // linear memory cap, rounded down to whole 64 KiB pages
	Deadline    time.Duration // wall clock per execution
	StdoutBytes int           // stdout beyond this ends the execution with StatusOutputTooLarge
	StderrBytes int           // stderr beyond this keeps only the tail
}

const pageSize = 64 << 10

// Per-execution defaults.
const (
	DefaultMemoryBytes uint64        = 256 << 20
	DefaultDeadline    time.Duration = 60 * time.Second
	DefaultStdoutBytes int           = 1 << 20
	DefaultStderrBytes int           = 64 << 10
)

// Node maximums used when Config.Max leaves a field zero.
const (
	MaxMemoryBytes uint64        = 4 << 30
	MaxDeadline    time.Duration = 24 * time.Hour
	MaxStdoutBytes int           = 64 << 20
	MaxStderrBytes int           = 1 << 20
)

// DefaultLimits returns the per-execution defaults.
func DefaultLimits() Limits {
	return Limits{MemoryBytes: DefaultMemoryBytes, Deadline: DefaultDeadline, StdoutBytes: DefaultStdoutBytes, StderrBytes: DefaultStderrBytes}
}

// withDefaults fills zero fields of l from d.
func (l Limits) withDefaults(d Limits) Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Deadline == 0 {
		l.Deadline = d.Deadline
	}
	if l.StdoutBytes == 0 {
		l.StdoutBytes = d.StdoutBytes
	}
	if l.StderrBytes == 0 {
		l.StderrBytes = d.StderrBytes
	}
	return l
}

// nodeMax returns the node maximums with zero fields filled from the built-in maximums.
func nodeMax(m Limits) Limits {
	return m.withDefaults(Limits{MemoryBytes: MaxMemoryBytes, Deadline: MaxDeadline, StdoutBytes: MaxStdoutBytes, StderrBytes: MaxStderrBytes})
}

// checkLimits fills req's zero fields with the defaults (each capped at max) and
// refuses any field above max. Pure: used by Sandbox.Limits and tested directly.
func checkLimits(req, max Limits) (Limits, error) {
	if req.Deadline < 0 {
		return Limits{}, fmt.Errorf("%w: deadline %v is negative", ErrLimit, req.Deadline)
	}
	if req.StdoutBytes < 0 || req.StderrBytes < 0 {
		return Limits{}, fmt.Errorf("%w: output limits must not be negative (stdout %d, stderr %d)", ErrLimit, req.StdoutBytes, req.StderrBytes)
	}
	if req.MemoryBytes > max.MemoryBytes {
		return Limits{}, fmt.Errorf("%w: memory limit %s asked, this node allows at most %s", ErrLimit, fmtBytes(req.MemoryBytes), fmtBytes(max.MemoryBytes))
	}
	if req.Deadline > max.Deadline {
		return Limits{}, fmt.Errorf("%w: deadline %v asked, this node allows at most %v", ErrLimit, req.Deadline, max.Deadline)
	}
	if req.StdoutBytes > max.StdoutBytes {
		return Limits{}, fmt.Errorf("%w: stdout limit %s asked, this node allows at most %s", ErrLimit, fmtBytes(uint64(req.StdoutBytes)), fmtBytes(uint64(max.StdoutBytes)))
	}
	if req.StderrBytes > max.StderrBytes {
		return Limits{}, fmt.Errorf("%w: stderr limit %s asked, this node allows at most %s", ErrLimit, fmtBytes(uint64(req.StderrBytes)), fmtBytes(uint64(max.StderrBytes)))
	}
	if req.MemoryBytes != 0 && req.MemoryBytes < pageSize {
		return Limits{}, fmt.Errorf("%w: memory limit %d bytes is below one 64 KiB page", ErrLimit, req.MemoryBytes)
	}
	d := DefaultLimits()
	d.MemoryBytes = min(d.MemoryBytes, max.MemoryBytes)
	d.Deadline = min(d.Deadline, max.Deadline)
	d.StdoutBytes = min(d.StdoutBytes, max.StdoutBytes)
	d.StderrBytes = min(d.StderrBytes, max.StderrBytes)
	out := req.withDefaults(d)
	out.MemoryBytes -= out.MemoryBytes % pageSize
	return out, nil
}

// memoryPages is the page count of l.MemoryBytes, capped at the 4 GiB wasm32 maximum.
func (l Limits) memoryPages() uint32 {
	return uint32(min(l.MemoryBytes/pageSize, 65536))
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
