package grid

import (
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// ExecState is the state of one execution in a node's inventory.
type ExecState uint8

// Execution states. Removed is a tombstone: the entry travels in deltas so
// that peers drop it too.
const (
	ExecRunning   ExecState = iota + 1
	ExecFinished            // finished; Digest names its outcome
	ExecAbandoned           // given up (deadline, the node was declared dead)
	ExecRemoved
)

func (s ExecState) String() string {
	switch s {
	case ExecRunning:
		return "running"
	case ExecFinished:
		return "finished"
	case ExecAbandoned:
		return "abandoned"
	case ExecRemoved:
		return "removed"
	}
	return "unknown"
}

// Execution is one entry of a node's inventory: what the node is running or
// has finished, as its peers learn it from its heartbeats.
type Execution struct {
	ID     string    `cbor:"1,keyasint"`
	State  ExecState `cbor:"2,keyasint"`
	Digest []byte    `cbor:"3,keyasint,omitempty"` // outcome digest, when finished
}

// Limits of inventory entries: they must fit heartbeats.
const (
	MaxExecutionID     = 64
	MaxExecutionDigest = 32
	tombstoneTTL       = time.Minute
)

func entryHash(e Execution) uint64 {
	h := fnv.New64a()
	h.Write([]byte(e.ID))
	h.Write([]byte{0, byte(e.State)})
	h.Write(e.Digest)
	return h.Sum64()
}

// entrySize is an upper bound of an entry's CBOR size inside a heartbeat.
func entrySize(e Execution) int { return len(e.ID) + len(e.Digest) + 12 }

type invEntry struct {
	Execution
	version uint64
	removed time.Time // when it became a tombstone
}

// Inventory is a node's own executions, versioned so that heartbeats carry
// only what a peer has not acknowledged. Every change gets the next version;
// the digest (an order-free hash of the live entries) lets a peer check that
// its copy is whole. Safe for concurrent use.
type Inventory struct {
	mu struct {
		sync.Mutex
		entries map[string]*invEntry
		log     []logRef // (version, id) in version order; stale refs skipped
		version uint64
		digest  uint64
		pruned  uint64 // highest version of a tombstone forgotten
	}
}

type logRef struct {
	version uint64
	id      string
}

// NewInventory returns an empty inventory.
func NewInventory() *Inventory {
	inv := &Inventory{}
	inv.mu.entries = make(map[string]*invEntry)
	return inv
}

// Set records an execution's state. IDs and digests over their limits are
// cut to them, so that one bad caller cannot break heartbeats.
func (inv *Inventory) Set(e Execution) {
	if len(e.ID) > MaxExecutionID {
		e.ID = e.ID[:MaxExecutionID]
	}
	if len(e.Digest) > MaxExecutionDigest {
		e.Digest = e.Digest[:MaxExecutionDigest]
	}
	e.Digest = slices.Clone(e.Digest)
	if e.State == ExecRemoved {
		inv.Remove(e.ID, time.Now())
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.setLocked(e, time.Time{})
}

// Remove drops an execution; peers learn of it through a tombstone. The ID
// is cut as Set cuts it, so that the caller's ID finds its entry.
func (inv *Inventory) Remove(id string, now time.Time) {
	if len(id) > MaxExecutionID {
		id = id[:MaxExecutionID]
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if old, ok := inv.mu.entries[id]; ok && old.State != ExecRemoved {
		inv.setLocked(Execution{ID: id, State: ExecRemoved}, now)
	}
}

// AbandonRunning marks every running execution abandoned and returns their
// IDs: what a node does when it learns it was declared dead.
func (inv *Inventory) AbandonRunning() []string {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var ids []string
	for id, e := range inv.mu.entries {
		if e.State == ExecRunning {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		inv.setLocked(Execution{ID: id, State: ExecAbandoned}, time.Time{})
	}
	return ids
}

func (inv *Inventory) setLocked(e Execution, now time.Time) {
	old, ok := inv.mu.entries[e.ID]
	switch {
	case ok && old.State == e.State && string(old.Digest) == string(e.Digest):
		return
	case !ok && e.State == ExecRemoved:
		return
	case ok && old.State != ExecRemoved:
		inv.mu.digest ^= entryHash(old.Execution)
	}
	inv.mu.version++
	ent := &invEntry{Execution: e, version: inv.mu.version, removed: now}
	inv.mu.entries[e.ID] = ent
	if e.State != ExecRemoved {
		inv.mu.digest ^= entryHash(e)
	}
	inv.mu.log = append(inv.mu.log, logRef{version: ent.version, id: e.ID})
	if len(inv.mu.log) > 64 && len(inv.mu.log) > 2*len(inv.mu.entries) {
		inv.compactLocked()
	}
}

func (inv *Inventory) compactLocked() {
	out := inv.mu.log[:0]
	for _, r := range inv.mu.log {
		if e, ok := inv.mu.entries[r.id]; ok && e.version == r.version {
			out = append(out, r)
		}
	}
	clear(inv.mu.log[len(out):])
	inv.mu.log = out
}

// Prune forgets tombstones older than the TTL. A peer that has not caught up
// past them gets a full copy instead of a delta.
func (inv *Inventory) Prune(now time.Time) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	pruned := false
	for id, e := range inv.mu.entries {
		if e.State == ExecRemoved && now.Sub(e.removed) > tombstoneTTL {
			delete(inv.mu.entries, id)
			inv.mu.pruned = max(inv.mu.pruned, e.version)
			pruned = true
		}
	}
	if pruned {
		inv.compactLocked()
	}
}

// Version and digest of the inventory now.
func (inv *Inventory) Version() (version, digest uint64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.mu.version, inv.mu.digest
}

// Delta returns the changes after version since, in version order, as many
// as fit budget bytes. to is the version the receiver reaches by applying
// them; complete says it is the current version. ok is false when since is
// too old for a delta (tombstones were forgotten): send a full copy.
func (inv *Inventory) Delta(since uint64, budget int) (entries []Execution, to uint64, complete, ok bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if since > inv.mu.version || (since < inv.mu.pruned) {
		return nil, 0, false, false
	}
	to = since
	i, _ := slices.BinarySearchFunc(inv.mu.log, since+1, func(r logRef, v uint64) int {
		switch {
		case r.version < v:
			return -1
		case r.version > v:
			return 1
		}
		return 0
	})
	for ; i < len(inv.mu.log); i++ {
		r := inv.mu.log[i]
		e, live := inv.mu.entries[r.id]
		if !live || e.version != r.version {
			continue
		}
		if budget -= entrySize(e.Execution); budget < 0 {
			return entries, to, false, true
		}
		entries = append(entries, e.Execution)
		to = r.version
	}
	return entries, inv.mu.version, true, true
}

// Full returns every live entry, the version and the digest.
func (inv *Inventory) Full() (entries []Execution, version, digest uint64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, e := range inv.mu.entries {
		if e.State != ExecRemoved {
			entries = append(entries, e.Execution)
		}
	}
	slices.SortFunc(entries, func(a, b Execution) int { return strings.Compare(a.ID, b.ID) })
	return entries, inv.mu.version, inv.mu.digest
}

// PeerInventory is a node's copy of a peer's inventory. It is a value owned
// by whoever holds it.
type PeerInventory struct {
	Incarnation uint64
	Version     uint64
	Digest      uint64
	Entries     map[string]Execution
}

// applyDelta applies changes (from, to] of the sender's incarnation inc. It
// reports false when the copy cannot take them (a gap, another
// incarnation): the caller asks for a full copy.
func (p PeerInventory) applyDelta(inc, from, to uint64, entries []Execution) (PeerInventory, bool) {
	if inc != p.Incarnation || from > p.Version {
		return p, false
	}
	if to <= p.Version {
		return p, true // nothing new
	}
	out := PeerInventory{Incarnation: inc, Version: to, Digest: p.Digest, Entries: maps.Clone(p.Entries)}
	if out.Entries == nil {
		out.Entries = make(map[string]Execution)
	}
	for _, e := range entries {
		if old, ok := out.Entries[e.ID]; ok {
			out.Digest ^= entryHash(old)
			delete(out.Entries, e.ID)
		}
		if e.State != ExecRemoved {
			out.Entries[e.ID] = e
			out.Digest ^= entryHash(e)
		}
	}
	return out, true
}

// fullInventory builds a copy from a full listing.
func fullInventory(inc, version uint64, entries []Execution) PeerInventory {
	out := PeerInventory{Incarnation: inc, Version: version, Entries: make(map[string]Execution, len(entries))}
	for _, e := range entries {
		if e.State == ExecRemoved {
			continue
		}
		out.Entries[e.ID] = e
		out.Digest ^= entryHash(e)
	}
	return out
}
