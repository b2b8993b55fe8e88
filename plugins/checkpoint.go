package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// MaxCheckpoint is the largest payload grid.checkpoint_save accepts: a sealed
// checkpoint must fit one node-to-node wire frame.
const MaxCheckpoint = 4 << 20

// The sealed checkpoint envelope (see SealCheckpoint):
//
//	"GNCK" u8(version) u16be(len(module)) module u32be(len(item)) item
//	u64be(seq) u32be(len(payload)) payload sha256(everything before it)
const (
	checkpointMagic   = "GNCK"
	checkpointVersion = 1
	checkpointSumLen  = sha256.Size
)

// SealCheckpoint wraps a payload saved by module for item into a
// self-describing envelope: it only opens (OpenCheckpoint) for the same module
// and item, and any change to its bytes is detected. Item IDs contain the
// job's ID, so the binding covers the job. seq numbers the checkpoints of an
// execution from 1, continuing across resumptions.
func SealCheckpoint(module Hash, itemID string, seq uint64, payload []byte) []byte {
	n := len(checkpointMagic) + 1 + 2 + len(module) + 4 + len(itemID) + 8 + 4 + len(payload) + checkpointSumLen
	b := make([]byte, 0, n)
	b = append(b, checkpointMagic...)
	b = append(b, checkpointVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(module)))
	b = append(b, module...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(itemID)))
	b = append(b, itemID...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// OpenCheckpoint checks a sealed checkpoint and returns its payload (a
// sub-slice of sealed) and sequence number. It refuses, with an error that
// wraps ErrCheckpoint and says what is wrong, bytes that are not a
// checkpoint, a truncated or corrupted one, and one sealed for another module
// or item: such a checkpoint cannot resume this execution.
func OpenCheckpoint(sealed []byte, module Hash, itemID string) (payload []byte, seq uint64, err error) {
	if len(sealed) < len(checkpointMagic) || string(sealed[:len(checkpointMagic)]) != checkpointMagic {
		return nil, 0, checkpointErrorf("not a checkpoint (no %s header)", checkpointMagic)
	}
	r := envelopeReader{b: sealed, off: len(checkpointMagic)}
	version := r.bytes(1)
	if r.short {
		return nil, 0, checkpointErrorf("checkpoint is truncated: %s bytes, too short for its header", commas(uint64(len(sealed))))
	}
	if version[0] != checkpointVersion {
		return nil, 0, checkpointErrorf("checkpoint format version %d is not supported (this node reads version %d)", version[0], checkpointVersion)
	}
	savedModule := r.bytes(int(r.u16()))
	savedItem := r.bytes(int(r.u32()))
	seq = r.u64()
	size := r.u32()
	if r.short {
		return nil, 0, checkpointErrorf("checkpoint is truncated: %s bytes, too short for its header", commas(uint64(len(sealed))))
	}
	if size > MaxCheckpoint {
		return nil, 0, checkpointErrorf("checkpoint is corrupted: its header claims a payload of %s bytes, over the %s limit", commas(uint64(size)), fmtBytes(MaxCheckpoint))
	}
	if total := uint64(r.off) + uint64(size) + checkpointSumLen; uint64(len(sealed)) < total {
		return nil, 0, checkpointErrorf("checkpoint is truncated: %s bytes, the header says %s", commas(uint64(len(sealed))), commas(total))
	}
	payload = r.bytes(int(size))
	r.bytes(checkpointSumLen)
	if extra := len(sealed) - r.off; extra > 0 {
		return nil, 0, checkpointErrorf("checkpoint is corrupted: %s extra byte(s) after its checksum", commas(uint64(extra)))
	}
	body := sealed[:r.off-checkpointSumLen]
	if sum := sha256.Sum256(body); string(sum[:]) != string(sealed[len(body):]) {
		return nil, 0, checkpointErrorf("checkpoint is corrupted: its checksum does not match")
	}
	if string(savedModule) != string(module) {
		return nil, 0, checkpointErrorf("checkpoint was saved by module %s, not %s: it cannot resume this execution", shortHash(string(savedModule)), shortHash(string(module)))
	}
	if string(savedItem) != itemID {
		return nil, 0, checkpointErrorf("checkpoint belongs to item %s, not %s", quoteID(string(savedItem)), quoteID(itemID))
	}
	return payload[:len(payload):len(payload)], seq, nil
}

// checkpointError is an OpenCheckpoint refusal: its text is the reason alone,
// fit for Outcome.CheckpointRefused, and it matches ErrCheckpoint.
type checkpointError struct{ msg string }

func (e *checkpointError) Error() string { return e.msg }
func (e *checkpointError) Unwrap() error { return ErrCheckpoint }

func checkpointErrorf(format string, args ...any) error {
	return &checkpointError{msg: fmt.Sprintf(format, args...)}
}

// envelopeReader reads the envelope's fields in order; once a field runs
// past the end, short is set and every later read returns zero values.
type envelopeReader struct {
	b     []byte
	off   int
	short bool
}

func (r *envelopeReader) bytes(n int) []byte {
	if r.short || n > len(r.b)-r.off {
		r.short = true
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

func (r *envelopeReader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *envelopeReader) u32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *envelopeReader) u64() uint64 {
	if v := r.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// shortHash names a module for a person; a saved name that is not a Hash is quoted.
func shortHash(s string) string {
	if h, err := ParseHash(s); err == nil {
		return h.short() + "…"
	}
	return quoteID(s)
}

// quoteID quotes an ID for a message, cut to a readable length.
func quoteID(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}

// commas formats n with thousands separators: 4096 → "4,096".
func commas(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// grid.checkpoint_save return codes, seen by the guest. Like grid.emit's,
// they depend only on the guest's own calls.
const (
	checkpointOK          uint32 = 0
	checkpointTooLarge    uint32 = 1 // len > MaxCheckpoint
	checkpointOutOfMemory uint32 = 3 // [ptr, ptr+len) is not inside the guest's memory (2 is not used)
)

// grid.checkpoint_load return codes besides the payload size.
const (
	checkpointNone        int64 = -1 // no checkpoint to resume from
	checkpointLoadOutside int64 = -3 // the payload fits cap but [ptr, ptr+size) is not inside memory
)

// checkpoints is the checkpoint state of one execution: the payload that
// grid.checkpoint_load returns (the task's, then the latest saved) and the
// sequence number of the last one. The guest's calls run one at a time, but
// a worker may snapshot the state from another goroutine, hence the mutex.
type checkpoints struct {
	module Hash
	item   string

	mu       sync.Mutex
	has      bool   // latest is set (an empty payload is a checkpoint too)
	latest   []byte // what checkpoint_load returns
	seq      uint64 // of latest; the next save is seq+1
	fromTask bool   // latest is the task's checkpoint (no save since)
	resumed  bool   // the guest loaded the task's checkpoint
	refused  string // why the task's checkpoint was refused, or ""

	// deliver gets every sealed checkpoint, in order, on the guest's goroutine.
	deliver func(sealed []byte)
}

// start opens the task's checkpoint, if any, for checkpoint_load.
func (c *checkpoints) start(t Task) {
	c.module, c.item = t.Module, t.ItemID
	if t.Checkpoint == nil {
		return
	}
	payload, seq, err := OpenCheckpoint(t.Checkpoint, t.Module, t.ItemID)
	if err != nil {
		c.refused = err.Error()
		return
	}
	c.has, c.latest, c.seq, c.fromTask = true, payload, seq, true
}

// state returns what the outcome reports: whether the guest resumed from the
// task's checkpoint, and why it was refused.
func (c *checkpoints) state() (resumed bool, refused string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumed, c.refused
}

// save checks the limits in a fixed order (size, bounds), seals a copy of
// the payload and delivers it.
func (c *checkpoints) save(mem api.Memory, ptr, size uint32) uint32 {
	if size > MaxCheckpoint {
		return checkpointTooLarge
	}
	if mem == nil {
		return checkpointOutOfMemory
	}
	b, ok := mem.Read(ptr, size) // false unless ptr+size <= memory size (no wrap-around)
	if !ok {
		return checkpointOutOfMemory
	}
	payload := slices.Clone(b) // b aliases guest memory
	c.mu.Lock()
	c.seq++
	c.has, c.latest, c.fromTask = true, payload, false
	sealed := SealCheckpoint(c.module, c.item, c.seq, payload)
	deliver := c.deliver
	c.mu.Unlock()
	if deliver != nil {
		deliver(sealed)
	}
	return checkpointOK
}

// load implements grid.checkpoint_load (see doc.go).
func (c *checkpoints) load(mem api.Memory, ptr, capacity uint32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.has {
		return checkpointNone
	}
	n := int64(len(c.latest))
	if n > int64(capacity) {
		return n
	}
	if mem == nil || !mem.Write(ptr, c.latest) {
		return checkpointLoadOutside
	}
	if c.fromTask {
		c.resumed = true
	}
	return n
}

func hostCheckpointSave(ctx context.Context, mod api.Module, ptr, size uint32) uint32 {
	st, _ := ctx.Value(execStateKey{}).(*execState)
	if st == nil {
		return checkpointTooLarge // not an execution of ours (cannot happen): save nothing
	}
	return st.ckpt.save(mod.Memory(), ptr, size)
}

func hostCheckpointLoad(ctx context.Context, mod api.Module, ptr, capacity uint32) int64 {
	st, _ := ctx.Value(execStateKey{}).(*execState)
	if st == nil {
		return checkpointNone
	}
	return st.ckpt.load(mod.Memory(), ptr, capacity)
}

// checkpointGate passes an in-process execution's checkpoints to
// Task.OnCheckpoint until Execute returns: a runaway guest that outlives its
// Execute call must not call back into a caller that has moved on.
type checkpointGate struct {
	mu     sync.Mutex
	f      func(sealed []byte)
	closed bool
}

func (g *checkpointGate) deliver(sealed []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed && g.f != nil {
		g.f(sealed)
	}
}

func (g *checkpointGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}
