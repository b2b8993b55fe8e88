package plugins

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Status classifies an execution.
type Status string

const (
	StatusOK             Status = "ok"               // _start returned or exited 0
	StatusExit           Status = "exit"             // exited with a non-zero code
	StatusTrap           Status = "trap"             // a WebAssembly trap; Trap names its kind
	StatusDeadline       Status = "deadline"         // the wall-clock deadline passed
	StatusMemory         Status = "memory_limit"     // linear memory hit the limit
	StatusOutputTooLarge Status = "output_too_large" // stdout exceeded its limit
	StatusInvalidModule  Status = "invalid_module"   // not a module wazero can compile
	StatusMissingImport  Status = "missing_import"   // imports the grid does not provide
	StatusCancelled      Status = "cancelled"        // the caller's ctx ended first
	StatusCrashed        Status = "crashed"          // worker died, not attributable: retriable
	StatusModuleNotFound Status = "module_not_found" // node-local: the module is not stored here; retriable after fetching it
)

// Outcome is the result of one execution. It is staged by the caller, never applied here.
type Outcome struct {
	Status          Status
	ExitCode        uint32
	Stdout          []byte
	Stderr          []byte // the tail, at most Limits.StderrBytes
	StderrTruncated bool
	Message         string   // for a person: what happened and what to do
	Trap            string   // trap kind, e.g. "unreachable"
	Stack           []string // wasm stack frames, innermost first, when the module has names
	Progress        float64  // last value passed to grid.progress; not part of the digest
	Emitted         [][]byte // child item inputs passed to grid.emit, in order; staged, and only when Status is ok
	// Resumed: Task.Checkpoint opened and the guest loaded it with
	// grid.checkpoint_load. Not part of the digest: a resumed execution
	// must agree with one that ran from the beginning.
	Resumed bool
	// CheckpointRefused says why Task.Checkpoint was refused (the execution
	// then ran from the beginning), or is "". Not part of the digest.
	CheckpointRefused string
	Digest            Hash
	Duration          time.Duration
}

// Retriable reports whether the outcome says nothing about the module and the
// item, so the same item may be run again (here or elsewhere) and must not vote:
// crashed (a worker died for a reason we cannot attribute, e.g. the OOM killer),
// cancelled (the caller gave up) and module_not_found (fetch the module first).
func (o Outcome) Retriable() bool {
	switch o.Status {
	case StatusCrashed, StatusCancelled, StatusModuleNotFound:
		return true
	}
	return false
}

// digestVersion is the first field of the canonical encoding. Changing the
// encoding means changing this string.
const digestVersion = "gridnode/plugins outcome v1"

// stdoutInDigest reports whether stdout is a deterministic function of the item for s.
// Partial output cut by a wall-clock event (deadline, cancel, crash) is not.
func stdoutInDigest(s Status) bool {
	switch s {
	case StatusDeadline, StatusCancelled, StatusCrashed, StatusModuleNotFound:
		return false
	}
	return true
}

// seal drops the staged effects of an execution that did not succeed (they
// never apply, and must not make two failures disagree) and computes the digest.
func (o *Outcome) seal() {
	if o.Status != StatusOK {
		o.Emitted = nil
	}
	o.Digest = computeDigest(o)
}

// computeDigest hashes the canonical encoding of an outcome:
//
//	field(digestVersion) field(status) u32be(exit code) field(trap kind) field(stdout)
//	u32be(n) field(e1) … field(en)
//
// where field(b) = u64be(len(b)) ‖ b, e1…en are the emitted child inputs in
// emission order (Outcome.Emitted; n = 0 ends the encoding of an execution
// that emitted nothing, exactly as before emit existed), and stdout is empty
// for statuses whose output was cut by wall-clock events (deadline, cancelled,
// crashed, module_not_found).
// Message, Stack, Stderr, Progress, Duration, Resumed and CheckpointRefused
// are not part of it: they may legitimately differ between two honest runs
// (one of which may have resumed from a checkpoint).
func computeDigest(o *Outcome) Hash {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	u32 := func(v uint32) {
		binary.BigEndian.PutUint32(n[:4], v)
		h.Write(n[:4])
	}
	field([]byte(digestVersion))
	field([]byte(o.Status))
	u32(o.ExitCode)
	field([]byte(o.Trap))
	if stdoutInDigest(o.Status) {
		field(o.Stdout)
	} else {
		field(nil)
	}
	u32(uint32(len(o.Emitted))) // staged effects: the emitted children
	for _, e := range o.Emitted {
		field(e)
	}
	return Hash(hashPrefix + hex.EncodeToString(h.Sum(nil)))
}
