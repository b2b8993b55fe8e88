package grid

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var invEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// invTwin is the naive twin of an Inventory: the live executions by ID,
// with the same cutting of IDs and digests. It knows nothing of versions.
type invTwin map[string]Execution

func cutExecution(e Execution) Execution {
	if len(e.ID) > MaxExecutionID {
		e.ID = e.ID[:MaxExecutionID]
	}
	if len(e.Digest) > MaxExecutionDigest {
		e.Digest = e.Digest[:MaxExecutionDigest]
	}
	e.Digest = slices.Clone(e.Digest)
	return e
}

func cutID(id string) string {
	if len(id) > MaxExecutionID {
		return id[:MaxExecutionID]
	}
	return id
}

// set applies Set and returns how many entries changed.
func (tw invTwin) set(e Execution) int {
	e = cutExecution(e)
	old, ok := tw[e.ID]
	if e.State == ExecRemoved {
		if !ok {
			return 0
		}
		delete(tw, e.ID)
		return 1
	}
	if ok && old.State == e.State && bytes.Equal(old.Digest, e.Digest) {
		return 0
	}
	tw[e.ID] = e
	return 1
}

func (tw invTwin) remove(id string) int {
	return tw.set(Execution{ID: id, State: ExecRemoved})
}

func (tw invTwin) abandonRunning() []string {
	var ids []string
	for id, e := range tw {
		if e.State == ExecRunning {
			ids = append(ids, id)
			tw[id] = Execution{ID: id, State: ExecAbandoned}
		}
	}
	slices.Sort(ids)
	return ids
}

// digest recomputes the order-free digest from scratch.
func (tw invTwin) digest() uint64 {
	var d uint64
	for _, e := range tw {
		d ^= entryHash(e)
	}
	return d
}

func (tw invTwin) sorted() []Execution {
	return slices.SortedFunc(maps.Values(tw), func(a, b Execution) int { return strings.Compare(a.ID, b.ID) })
}

func sameExecutions(a, b []Execution) bool {
	return slices.EqualFunc(a, b, func(x, y Execution) bool {
		return x.ID == y.ID && x.State == y.State && bytes.Equal(x.Digest, y.Digest)
	})
}

func peerEntries(p PeerInventory) []Execution {
	return slices.SortedFunc(maps.Values(p.Entries), func(a, b Execution) int { return strings.Compare(a.ID, b.ID) })
}

// checkInventory compares an inventory with its twin: Full sorted by ID and
// equal to the twin, and the same digest as Version and a recount.
func checkInventory(inv *Inventory, tw invTwin) error {
	entries, version, digest := inv.Full()
	v2, d2 := inv.Version()
	if v2 != version || d2 != digest {
		return fmt.Errorf("Full says version %d digest %x, Version says %d %x", version, digest, v2, d2)
	}
	if !slices.IsSortedFunc(entries, func(a, b Execution) int { return strings.Compare(a.ID, b.ID) }) {
		return fmt.Errorf("Full not sorted by ID")
	}
	if want := tw.sorted(); !sameExecutions(entries, want) {
		return fmt.Errorf("Full = %v\ntwin = %v", entries, want)
	}
	if want := tw.digest(); digest != want {
		return fmt.Errorf("digest %x, recount %x", digest, want)
	}
	return nil
}

// invPeer is a peer that keeps a copy of the inventory from deltas.
//
// A reliable peer is sent deltas since the version it holds (what its
// acknowledgements say) and each is delivered at once or lost. A lossy peer
// is sent deltas since the last version it was sent (the sender assumes
// delivery); deltas wait in flight and are delivered in any order or lost.
type invPeer struct {
	t        *testing.T
	lossy    bool
	inc      uint64
	copy     PeerInventory
	sentTo   uint64
	inflight []invDelta

	applied, refused, fulls, dropped int
}

type invDelta struct {
	from, to uint64
	entries  []Execution
}

// reset installs a full copy, as a peer does when a delta does not apply.
func (p *invPeer) reset(inv *Inventory) {
	entries, version, _ := inv.Full()
	p.copy = fullInventory(p.inc, version, entries)
	p.sentTo = version
	p.fulls++
}

// send asks the inventory for a delta with a random budget. It reports
// whether the delta was the complete rest.
func (p *invPeer) send(rng *rand.Rand, inv *Inventory) (complete bool) {
	since := p.copy.Version
	if p.lossy {
		since = p.sentTo
	}
	budget := 50 + rng.IntN(1951)
	entries, to, complete, ok := inv.Delta(since, budget)
	if !ok {
		p.reset(inv)
		return true
	}
	size := 0
	seen := map[string]bool{}
	for _, e := range entries {
		size += entrySize(e)
		if seen[e.ID] {
			p.t.Fatalf("delta since %d lists %s twice", since, e.ID)
		}
		seen[e.ID] = true
	}
	if size > budget {
		p.t.Fatalf("delta of %d bytes over a budget of %d", size, budget)
	}
	d := invDelta{from: since, to: to, entries: slices.Clone(entries)}
	if p.lossy {
		p.sentTo = max(p.sentTo, to)
		p.inflight = append(p.inflight, d)
	} else {
		p.deliver(inv, d)
	}
	return complete
}

func (p *invPeer) deliver(inv *Inventory, d invDelta) {
	before := maps.Clone(p.copy.Entries)
	next, ok := p.copy.applyDelta(p.inc, d.from, d.to, d.entries)
	if !maps.EqualFunc(before, p.copy.Entries, func(a, b Execution) bool { return a.State == b.State && bytes.Equal(a.Digest, b.Digest) }) {
		p.t.Fatal("applyDelta modified the copy it was called on")
	}
	if !ok {
		if !p.lossy {
			p.t.Fatalf("applyDelta refused (%d, %d] on a copy at %d", d.from, d.to, p.copy.Version)
		}
		p.refused++
		p.reset(inv)
		return
	}
	p.applied++
	p.copy = next
}

// deliverSome delivers or drops in-flight deltas of a lossy peer, in a
// random order.
func (p *invPeer) deliverSome(rng *rand.Rand, inv *Inventory, drop bool) {
	for len(p.inflight) > 0 && rng.IntN(3) > 0 {
		i := rng.IntN(len(p.inflight))
		d := p.inflight[i]
		p.inflight = slices.Delete(p.inflight, i, i+1)
		if drop && rng.IntN(5) == 0 {
			p.dropped++
			continue
		}
		p.deliver(inv, d)
	}
}

// checkPeer: a copy at the sender's current version holds exactly the
// twin's entries with the sender's digest.
func checkPeer(p *invPeer, inv *Inventory, tw invTwin) error {
	version, digest := inv.Version()
	if p.copy.Version != version {
		return nil
	}
	if got, want := peerEntries(p.copy), tw.sorted(); !sameExecutions(got, want) {
		return fmt.Errorf("peer at version %d holds %v\ntwin %v", version, got, want)
	}
	if p.copy.Digest != digest {
		return fmt.Errorf("peer at version %d has digest %x, the inventory %x", version, p.copy.Digest, digest)
	}
	return nil
}

// catchUp sends deltas without loss until the peer holds the current
// version, as heartbeats and pushes do once the network heals.
func (p *invPeer) catchUp(rng *rand.Rand, inv *Inventory) {
	p.t.Helper()
	for _, d := range p.inflight {
		p.deliver(inv, d)
	}
	p.inflight = nil
	for range 10000 {
		if version, _ := inv.Version(); p.copy.Version == version {
			return
		}
		if p.lossy {
			// The sender learns the peer's version again, as from an Ack.
			p.sentTo = p.copy.Version
		}
		p.send(rng, inv)
		for _, d := range p.inflight {
			p.deliver(inv, d)
		}
		p.inflight = nil
	}
	p.t.Fatalf("peer never caught up: at %d", p.copy.Version)
}

func randomExecution(rng *rand.Rand, ids []string) Execution {
	e := Execution{ID: ids[rng.IntN(len(ids))], State: []ExecState{ExecRunning, ExecFinished, ExecAbandoned}[rng.IntN(3)]}
	switch rng.IntN(4) {
	case 0:
		e.Digest = []byte("d1")
	case 1:
		e.Digest = []byte("d2")
	case 2:
		e.Digest = make([]byte, 1+rng.IntN(2*MaxExecutionDigest))
		for i := range e.Digest {
			e.Digest[i] = byte(rng.IntN(4))
		}
	}
	if rng.IntN(40) == 0 {
		e.State, e.Digest = ExecRemoved, nil // Set can remove too
	}
	return e
}

// TestInventoryModel drives an Inventory and its twin with random
// operations, and keeps a reliable and a lossy peer in sync with deltas.
func TestInventoryModel(t *testing.T) {
	rng := decisionRand(t)
	var total invPeer
	for run := range 16 {
		inv := NewInventory()
		tw := invTwin{}
		now := invEpoch
		var ids []string
		for i := range 30 {
			ids = append(ids, fmt.Sprintf("job%d/item%d", i%4, i))
		}
		// Long IDs, two of which cut to the same prefix.
		long := strings.Repeat("x", MaxExecutionID)
		ids = append(ids, long+"-a", long+"-b", strings.Repeat("y", MaxExecutionID+7))
		const inc = 3
		peers := []*invPeer{
			{t: t, inc: inc, copy: PeerInventory{Incarnation: inc}},
			{t: t, inc: inc, copy: PeerInventory{Incarnation: inc}, lossy: true},
		}
		for step := range 400 {
			prev, _ := inv.Version()
			changed := 0
			what := ""
			switch op := rng.IntN(100); {
			case op < 45:
				e := randomExecution(rng, ids)
				what = fmt.Sprintf("set %s %s %x", e.ID, e.State, e.Digest)
				changed = tw.set(e)
				inv.Set(e)
			case op < 65:
				id := ids[rng.IntN(len(ids))]
				what = "remove " + id
				changed = tw.remove(id)
				inv.Remove(id, now)
			case op < 68:
				what = "abandon running"
				want := tw.abandonRunning()
				changed = len(want)
				if got := inv.AbandonRunning(); !slices.Equal(got, want) {
					t.Fatalf("run %d step %d: AbandonRunning = %v, want %v", run, step, got, want)
				}
			case op < 75:
				now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
				what = "prune"
				inv.Prune(now)
			default:
				what = "sync"
				for _, p := range peers {
					p.send(rng, inv)
					p.deliverSome(rng, inv, true)
				}
			}
			if version, _ := inv.Version(); version != prev+uint64(changed) {
				t.Fatalf("run %d step %d (%s): version %d -> %d, want +%d", run, step, what, prev, version, changed)
			}
			if err := checkInventory(inv, tw); err != nil {
				t.Fatalf("run %d step %d (%s): %v", run, step, what, err)
			}
			for i, p := range peers {
				if err := checkPeer(p, inv, tw); err != nil {
					t.Fatalf("run %d step %d (%s): peer %d: %v", run, step, what, i, err)
				}
			}
		}
		for i, p := range peers {
			p.catchUp(rng, inv)
			if err := checkPeer(p, inv, tw); err != nil {
				t.Fatalf("run %d: peer %d after catching up: %v", run, i, err)
			}
			total.applied += p.applied
			total.refused += p.refused
			total.fulls += p.fulls
			total.dropped += p.dropped
		}
	}
	t.Logf("deltas applied %d, refused %d, dropped %d; full copies %d", total.applied, total.refused, total.dropped, total.fulls)
	if total.applied == 0 || total.refused == 0 || total.fulls == 0 || total.dropped == 0 {
		t.Errorf("the model missed a path: %+v", total)
	}
}

func TestInventoryDeltaAfterPrune(t *testing.T) {
	inv := NewInventory()
	inv.Set(Execution{ID: "a", State: ExecRunning})  // v1
	inv.Set(Execution{ID: "b", State: ExecRunning})  // v2
	inv.Remove("a", invEpoch)                        // v3: tombstone
	inv.Set(Execution{ID: "c", State: ExecRunning})  // v4
	inv.Remove("c", invEpoch.Add(50*time.Second))    // v5: tombstone
	inv.Set(Execution{ID: "b", State: ExecFinished}) // v6
	if _, _, _, ok := inv.Delta(0, 1000); !ok {
		t.Fatal("Delta(0) before any prune: not ok")
	}
	// Nothing is old enough yet.
	inv.Prune(invEpoch.Add(tombstoneTTL))
	entries, to, complete, ok := inv.Delta(0, 1000)
	if !ok || !complete || to != 6 || len(entries) != 3 {
		t.Fatalf("Delta(0) after a prune too early = %v, %d, %v, %v; want a, c tombstones and b", entries, to, complete, ok)
	}
	// a's tombstone (v3) goes; c's (v5) stays.
	inv.Prune(invEpoch.Add(tombstoneTTL + time.Second))
	for since := range uint64(3) {
		if _, _, _, ok := inv.Delta(since, 1000); ok {
			t.Errorf("Delta(%d) after a's tombstone (v3) was forgotten: ok", since)
		}
	}
	for since := uint64(3); since <= 6; since++ {
		if _, _, _, ok := inv.Delta(since, 1000); !ok {
			t.Errorf("Delta(%d): not ok, though the peer saw every forgotten tombstone", since)
		}
	}
	if _, _, _, ok := inv.Delta(7, 1000); ok {
		t.Error("Delta(7) beyond the version: ok")
	}
	entries, to, complete, ok = inv.Delta(3, 1000)
	if !ok || !complete || to != 6 || len(entries) != 2 || entries[0].ID != "c" || entries[0].State != ExecRemoved || entries[1].ID != "b" {
		t.Errorf("Delta(3) = %v, %d, %v, %v; want c's tombstone then b, to 6", entries, to, complete, ok)
	}
	// A too-small budget sends nothing and moves nothing.
	entries, to, complete, ok = inv.Delta(3, 5)
	if !ok || complete || to != 3 || len(entries) != 0 {
		t.Errorf("Delta(3, 5 bytes) = %v, %d, %v, %v; want nothing, to 3, incomplete", entries, to, complete, ok)
	}
	if entries, to, complete, ok := inv.Delta(6, 1000); !ok || !complete || to != 6 || len(entries) != 0 {
		t.Errorf("Delta(current) = %v, %d, %v, %v; want nothing, complete", entries, to, complete, ok)
	}
}

func TestInventoryFullSortedAndCut(t *testing.T) {
	inv := NewInventory()
	for _, id := range []string{"m", "b", "z", "a", "q"} {
		inv.Set(Execution{ID: id, State: ExecRunning})
	}
	long := strings.Repeat("i", MaxExecutionID+10)
	digest := bytes.Repeat([]byte{7}, MaxExecutionDigest+5)
	inv.Set(Execution{ID: long, State: ExecFinished, Digest: digest})
	digest[0] = 99 // the inventory keeps its own copy
	entries, _, _ := inv.Full()
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	if !slices.IsSorted(ids) || len(ids) != 6 {
		t.Fatalf("Full IDs %q: want 6, sorted", ids)
	}
	var cut Execution
	for _, e := range entries {
		if strings.HasPrefix(e.ID, "ii") {
			cut = e
		}
	}
	if len(cut.ID) != MaxExecutionID || len(cut.Digest) != MaxExecutionDigest || cut.Digest[0] != 7 {
		t.Fatalf("long entry stored as ID %d bytes, digest %d bytes %x", len(cut.ID), len(cut.Digest), cut.Digest)
	}
	if got := entrySize(cut); got != MaxExecutionID+MaxExecutionDigest+12 {
		t.Fatalf("entrySize of the longest entry = %d", got)
	}
	// The long ID as the caller knows it removes the entry.
	inv.Remove(long, invEpoch)
	entries, _, _ = inv.Full()
	if len(entries) != 5 {
		t.Fatalf("Remove with the uncut ID left %d entries: %v", len(entries), entries)
	}
	entries, _, _, _ = inv.Delta(0, 1<<20)
	for _, e := range entries {
		if len(e.ID) > MaxExecutionID || len(e.Digest) > MaxExecutionDigest {
			t.Fatalf("Delta entry over the limits: %d, %d bytes", len(e.ID), len(e.Digest))
		}
	}
}

func TestInventoryApplyDeltaRefuses(t *testing.T) {
	inv := NewInventory()
	inv.Set(Execution{ID: "a", State: ExecRunning})
	inv.Set(Execution{ID: "b", State: ExecFinished, Digest: []byte("x")})
	entries, to, _, _ := inv.Delta(0, 1000)
	p := PeerInventory{Incarnation: 2}
	if _, ok := p.applyDelta(3, 0, to, entries); ok {
		t.Error("applyDelta of another incarnation: ok")
	}
	if _, ok := p.applyDelta(1, 0, to, entries); ok {
		t.Error("applyDelta of an older incarnation: ok")
	}
	if _, ok := p.applyDelta(2, 1, to, entries); ok {
		t.Error("applyDelta with a gap (from 1 on a copy at 0): ok")
	}
	q, ok := p.applyDelta(2, 0, to, entries)
	if !ok || q.Version != to || len(q.Entries) != 2 || p.Entries != nil || p.Version != 0 {
		t.Fatalf("applyDelta: %v %+v; the receiver now %+v", ok, q, p)
	}
	_, d := inv.Version()
	if q.Digest != d {
		t.Fatalf("digest %x after a whole delta, want %x", q.Digest, d)
	}
	// An old delta again changes nothing.
	if r, ok := q.applyDelta(2, 0, 1, entries[:1]); !ok || r.Version != q.Version || r.Digest != q.Digest {
		t.Errorf("an old delta: %v %+v", ok, r)
	}
	// A full copy of another incarnation replaces everything.
	f := fullInventory(5, 1, []Execution{{ID: "z", State: ExecRunning}, {ID: "gone", State: ExecRemoved}})
	if f.Incarnation != 5 || f.Version != 1 || len(f.Entries) != 1 || f.Digest != entryHash(Execution{ID: "z", State: ExecRunning}) {
		t.Errorf("fullInventory = %+v", f)
	}
}

// TestInventoryDigestOrderFree builds the same set of executions in
// different orders, through different histories: the digests agree with
// each other, with fullInventory of any permutation, and with a copy built
// from deltas. A different set has another digest.
func TestInventoryDigestOrderFree(t *testing.T) {
	rng := decisionRand(t)
	var final []Execution
	for i := range 40 {
		e := Execution{ID: fmt.Sprintf("e%02d", i), State: ExecState(1 + i%3)}
		if e.State == ExecFinished {
			e.Digest = []byte{byte(i), 1, 2}
		}
		final = append(final, e)
	}
	var want uint64
	for k := range 20 {
		inv := NewInventory()
		order := rng.Perm(len(final))
		for _, i := range order {
			if rng.IntN(3) == 0 { // a detour: another state first, or a removed one
				inv.Set(Execution{ID: final[i].ID, State: ExecRunning, Digest: []byte("tmp")})
			}
			if rng.IntN(4) == 0 {
				inv.Set(Execution{ID: fmt.Sprintf("tmp%d", i), State: ExecRunning})
				inv.Remove(fmt.Sprintf("tmp%d", i), invEpoch)
			}
			inv.Set(final[i])
		}
		entries, _, d := inv.Full()
		if !sameExecutions(entries, final) {
			t.Fatalf("order %d: Full = %v", k, entries)
		}
		if k == 0 {
			want = d
		} else if d != want {
			t.Fatalf("order %d: digest %x, first order %x", k, d, want)
		}
		perm := slices.Clone(final)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		if f := fullInventory(1, 1, perm); f.Digest != want {
			t.Fatalf("fullInventory of a permutation: digest %x, want %x", f.Digest, want)
		}
		p := invPeer{t: t, inc: 1, copy: PeerInventory{Incarnation: 1}}
		p.catchUp(rng, inv)
		if p.copy.Digest != want {
			t.Fatalf("a copy built from deltas: digest %x, want %x", p.copy.Digest, want)
		}
	}
	other := slices.Clone(final)
	other[7].State = ExecAbandoned
	if fullInventory(1, 1, other).Digest == want {
		t.Fatal("another state, same digest")
	}
	other = slices.Clone(final)
	other[2].Digest = []byte{2, 1, 3}
	if fullInventory(1, 1, other).Digest == want {
		t.Fatal("another outcome digest, same digest")
	}
	if fullInventory(1, 1, final[1:]).Digest == want {
		t.Fatal("one entry fewer, same digest")
	}
}
