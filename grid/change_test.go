package grid

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// decisionRand returns the random source of a randomised test of pure
// decision code (Apply, topology, inventory). The seed is GRID_SEED when set,
// else a fresh one; it is logged so that a failure replays exactly.
func decisionRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GRID_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GRID_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with GRID_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc908))
}

// copyViewDeep copies a view without View.Clone (which is under test),
// keeping nil maps and slices nil.
func copyViewDeep(v View) View {
	out := View{Epoch: v.Epoch}
	if v.Members != nil {
		out.Members = make([]Member, len(v.Members))
		for i, m := range v.Members {
			m.Labels = maps.Clone(m.Labels)
			out.Members[i] = m
		}
	}
	return out
}

func copyChangeDeep(c Change) Change {
	c.Member.Labels = maps.Clone(c.Member.Labels)
	c.Monitors = slices.Clone(c.Monitors)
	return c
}

// applyOutcome classifies what Apply did with a change.
type applyOutcome int

const (
	outSame    applyOutcome = iota // nil error, the view as is
	outChanged                     // nil error, epoch+1
	outStale                       // ErrStale, the view as is
	outInvalid                     // another error, the view as is
)

func (o applyOutcome) String() string {
	return [...]string{"same", "changed", "stale", "invalid"}[o]
}

// naiveApply is the deliberately plain twin of Apply: a linear search, a
// sort after every insertion, the rules of Apply's comment spelled out one
// by one. It returns the view it expects and how Apply should classify c.
//
// Where the comment is silent, the twin pins the behaviour the rest of the
// package relies on: a join with the same incarnation and different
// address, labels or slots updates an alive member in place; a leave or
// death of an ended member (and a join with the incarnation of an ended
// member) is stale, since the view has moved past that incarnation.
func naiveApply(v View, c Change) (View, applyOutcome) {
	find := func(id string) int {
		for i, m := range v.Members {
			if m.NodeID == id {
				return i
			}
		}
		return -1
	}
	switch c.Kind {
	case ChangeJoin:
		m := c.Member
		if ValidNodeID(m.NodeID) != nil || m.Incarnation == 0 || m.Addr == "" {
			return v, outInvalid
		}
		next := Member{NodeID: m.NodeID, Incarnation: m.Incarnation, Addr: m.Addr,
			Labels: m.Labels, Slots: m.Slots, State: Alive}
		i := find(m.NodeID)
		if i < 0 {
			out := copyViewDeep(v)
			out.Epoch++
			out.Members = append(out.Members, next)
			slices.SortFunc(out.Members, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
			return out, outChanged
		}
		old := v.Members[i]
		if m.Incarnation < old.Incarnation {
			return v, outStale
		}
		if m.Incarnation == old.Incarnation {
			if old.State != Alive {
				return v, outStale
			}
			if old.Addr == m.Addr && old.Slots == m.Slots && maps.Equal(old.Labels, m.Labels) {
				return v, outSame
			}
		}
		next.Monitor = old.Monitor && old.State == Alive
		out := copyViewDeep(v)
		out.Epoch++
		out.Members[i] = next
		return out, outChanged

	case ChangeLeave, ChangeDeath:
		to := Left
		if c.Kind == ChangeDeath {
			to = Dead
		}
		i := find(c.Member.NodeID)
		if i < 0 {
			return v, outInvalid
		}
		old := v.Members[i]
		switch {
		case c.Member.Incarnation < old.Incarnation:
			return v, outStale
		case c.Member.Incarnation > old.Incarnation:
			return v, outInvalid
		case old.State == to:
			return v, outSame
		case old.State != Alive:
			return v, outStale
		}
		out := copyViewDeep(v)
		out.Epoch++
		out.Members[i].State = to
		out.Members[i].Monitor = false
		return out, outChanged

	case ChangeMonitors:
		want := map[string]bool{}
		for _, id := range c.Monitors {
			i := find(id)
			if i < 0 || v.Members[i].State != Alive {
				return v, outInvalid
			}
			want[id] = true
		}
		out := copyViewDeep(v)
		same := true
		for i := range out.Members {
			if out.Members[i].Monitor != want[out.Members[i].NodeID] {
				same = false
			}
			out.Members[i].Monitor = want[out.Members[i].NodeID]
		}
		if same {
			return v, outSame
		}
		out.Epoch++
		return out, outChanged
	}
	return v, outInvalid
}

// membersEqual compares member lists by content (labels as maps; nil and
// empty are the same labels).
func membersEqual(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.NodeID == y.NodeID && x.Incarnation == y.Incarnation && x.Addr == y.Addr &&
			x.Slots == y.Slots && x.State == y.State && x.Monitor == y.Monitor &&
			maps.Equal(x.Labels, y.Labels)
	})
}

// viewsIdentical is an exact comparison (nil and empty differ), a fast
// reflect.DeepEqual for views.
func viewsIdentical(a, b View) bool {
	return a.Epoch == b.Epoch && (a.Members == nil) == (b.Members == nil) &&
		slices.EqualFunc(a.Members, b.Members, func(x, y Member) bool {
			return x.NodeID == y.NodeID && x.Incarnation == y.Incarnation && x.Addr == y.Addr &&
				x.Slots == y.Slots && x.State == y.State && x.Monitor == y.Monitor &&
				(x.Labels == nil) == (y.Labels == nil) && maps.Equal(x.Labels, y.Labels)
		})
}

func classify(err error) applyOutcome {
	switch {
	case err == nil:
		return outSame // or changed: told apart by the epoch
	case errors.Is(err, ErrStale):
		return outStale
	}
	return outInvalid
}

// checkViewShape checks what every view Apply returns must satisfy: members
// sorted by node ID and unique, and (when the input had none) no member that
// is not alive is a monitor.
func checkViewShape(v View, noEndedMonitors bool) error {
	for i := 1; i < len(v.Members); i++ {
		if v.Members[i-1].NodeID >= v.Members[i].NodeID {
			return fmt.Errorf("members not sorted and unique at %d: %q, %q", i, v.Members[i-1].NodeID, v.Members[i].NodeID)
		}
	}
	if noEndedMonitors {
		for _, m := range v.Members {
			if m.Monitor && m.State != Alive {
				return fmt.Errorf("%s is %s and a monitor", m.NodeID, m.State)
			}
		}
	}
	return nil
}

func hasEndedMonitor(v View) bool {
	for _, m := range v.Members {
		if m.Monitor && m.State != Alive {
			return true
		}
	}
	return false
}

const enumEpoch = 7

var enumIDs = []string{"a", "b", "c"}

func enumAddr(id string) string { return "10.0.0." + id + ":7000" }

func enumLabels(id string) map[string]string {
	// An empty value on purpose: labels {rack:""} and {row:""} differ.
	return map[string]string{"host": "h-" + id, "rack": ""}
}

// enumViews returns every view over a subset of enumIDs, each member in
// every combination of state, incarnation 1-2 and monitor flag (including
// the impossible "ended monitor", to see what Apply makes of it).
func enumViews() []View {
	var out []View
	var rec func(i int, ms []Member)
	rec = func(i int, ms []Member) {
		if i == len(enumIDs) {
			out = append(out, copyViewDeep(View{Epoch: enumEpoch, Members: ms}))
			return
		}
		rec(i+1, ms)
		id := enumIDs[i]
		for _, st := range []State{Alive, Dead, Left} {
			for inc := uint64(1); inc <= 2; inc++ {
				for _, mon := range []bool{false, true} {
					m := Member{NodeID: id, Incarnation: inc, Addr: enumAddr(id), Labels: enumLabels(id),
						Slots: 4, State: st, Monitor: mon}
					rec(i+1, append(ms, m))
				}
			}
		}
	}
	rec(0, nil)
	return out
}

// enumChanges returns every change over enumIDs plus "d", a node that is in
// no enumerated view.
func enumChanges() []Change {
	ids := append(slices.Clone(enumIDs), "d")
	var cs []Change
	for _, id := range ids {
		for inc := uint64(1); inc <= 3; inc++ {
			for variant := range 5 {
				m := Member{NodeID: id, Incarnation: inc, Addr: enumAddr(id), Labels: enumLabels(id), Slots: 4}
				switch variant {
				case 1: // another address
					m.Addr = "10.0.9." + id + ":7001"
				case 2: // same number of labels, another key
					m.Labels = map[string]string{"host": "h-" + id, "row": ""}
				case 3: // other capacity; a junk state and monitor flag Apply must ignore
					m.Slots, m.State, m.Monitor = 8, Dead, true
				case 4: // another address and no labels at all
					m.Addr, m.Labels, m.State = "10.0.9."+id+":7001", nil, Left
				}
				cs = append(cs, Change{Kind: ChangeJoin, Member: m})
			}
			cs = append(cs,
				Change{Kind: ChangeLeave, Member: Member{NodeID: id, Incarnation: inc}},
				Change{Kind: ChangeDeath, Member: Member{NodeID: id, Incarnation: inc}})
		}
	}
	for mask := range 1 << len(enumIDs) {
		var set []string
		for i, id := range enumIDs {
			if mask&(1<<i) != 0 {
				set = append(set, id)
			}
		}
		cs = append(cs, Change{Kind: ChangeMonitors, Monitors: set})
	}
	cs = append(cs,
		Change{Kind: ChangeMonitors, Monitors: []string{"b", "a", "b"}}, // unordered, repeated
		Change{Kind: ChangeMonitors, Monitors: []string{"d"}},           // no member
		Change{Kind: ChangeMonitors, Monitors: []string{"a", "d"}},
		Change{Kind: ChangeMonitors, Monitors: []string{}},
		Change{Kind: ChangeJoin, Member: Member{NodeID: "a", Incarnation: 0, Addr: enumAddr("a")}},
		Change{Kind: ChangeJoin, Member: Member{NodeID: "a", Incarnation: 2}},
		Change{Kind: ChangeJoin, Member: Member{NodeID: "A!", Incarnation: 1, Addr: "x:1"}},
		Change{Kind: ChangeJoin, Member: Member{NodeID: "", Incarnation: 1, Addr: "x:1"}},
		Change{Kind: 0, Member: Member{NodeID: "a", Incarnation: 1}},
		Change{Kind: 99, Member: Member{NodeID: "a", Incarnation: 1}},
	)
	return cs
}

// TestApplyExhaustive runs every enumerated change against every enumerated
// view and checks Apply against naiveApply and against invariants that
// hold whatever the twin says.
func TestApplyExhaustive(t *testing.T) {
	views, changes := enumViews(), enumChanges()
	changesBefore := make([]Change, len(changes))
	for i, c := range changes {
		changesBefore[i] = copyChangeDeep(c)
	}
	defer func() {
		for i := range changes {
			a, b := changes[i], changesBefore[i]
			if !viewsIdentical(View{Members: []Member{a.Member}}, View{Members: []Member{b.Member}}) ||
				!slices.Equal(a.Monitors, b.Monitors) || a.Kind != b.Kind || a.Epoch != b.Epoch {
				t.Errorf("Apply modified change %d: %+v, was %+v", i, a, b)
			}
		}
	}()
	if len(views) != 1+3*12+3*12*12+12*12*12 {
		t.Fatalf("enumerated %d views", len(views))
	}
	seen := map[applyOutcome]int{}
	fails := 0
	for _, v := range views {
		before := copyViewDeep(v)
		validIn := !hasEndedMonitor(v)
		for _, c := range changes {
			want, wantOut := naiveApply(before, c)
			got, err := Apply(v, c)
			fail := func(format string, args ...any) {
				t.Helper()
				t.Errorf("view %s\nchange %s (kind %d, labels %v, slots %d): "+format,
					append([]any{fmtView(before), c, c.Kind, c.Member.Labels, c.Member.Slots}, args...)...)
				if fails++; fails > 20 {
					t.FailNow()
				}
			}
			gotOut := classify(err)
			if gotOut == outSame && got.Epoch != v.Epoch {
				gotOut = outChanged
			}
			seen[gotOut]++
			if gotOut != wantOut {
				fail("outcome %s (err %v), twin says %s", gotOut, err, wantOut)
				continue
			}
			// Independently of the twin: the epoch moves by one exactly
			// when the members changed.
			switch {
			case got.Epoch == v.Epoch:
				if !viewsIdentical(got, before) {
					fail("epoch stayed but the view changed: %s", fmtView(got))
				}
			case got.Epoch == v.Epoch+1:
				if membersEqual(got.Members, v.Members) {
					fail("epoch moved but the members did not")
				}
			default:
				fail("epoch %d from %d", got.Epoch, v.Epoch)
			}
			if wantOut == outChanged && !viewsIdentical(got, want) {
				fail("got %s\ntwin %s", fmtView(got), fmtView(want))
			}
			if err := checkViewShape(got, validIn); err != nil {
				fail("%v in %s", err, fmtView(got))
			}
			if wantOut == outChanged {
				// The result must share nothing with the input. (The joined
				// member's labels may be the change's own map: leave it.)
				for i := range got.Members {
					got.Members[i].Addr += "!"
					got.Members[i].Slots++
					joined := c.Kind == ChangeJoin && got.Members[i].NodeID == c.Member.NodeID
					if got.Members[i].Labels != nil && !joined {
						got.Members[i].Labels["mutated"] = "yes"
					}
				}
				if !viewsIdentical(v, before) {
					fail("the result aliases the input: changing it changed the input")
					v = copyViewDeep(before)
				}
			}
		}
		// Checked once per view for speed; on failure, find the change.
		if !viewsIdentical(v, before) {
			for _, c := range changes {
				w := copyViewDeep(before)
				Apply(w, c)
				if !viewsIdentical(w, before) {
					t.Fatalf("Apply(%s, %s) modified its input: now %s", fmtView(before), c, fmtView(w))
				}
			}
			t.Fatalf("Apply modified its input %s: now %s", fmtView(before), fmtView(v))
		}
	}
	t.Logf("%d views x %d changes: %v", len(views), len(changes), seen)
	for o := outSame; o <= outInvalid; o++ {
		if seen[o] == 0 {
			t.Errorf("no change had outcome %s: the enumeration is too narrow", o)
		}
	}
}

func fmtView(v View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "e%d[", v.Epoch)
	for i, m := range v.Members {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s#%d:%s", m.NodeID, m.Incarnation, m.State)
		if m.Monitor {
			b.WriteString("+mon")
		}
		fmt.Fprintf(&b, "@%s/%d/%v", m.Addr, m.Slots, m.Labels)
	}
	b.WriteByte(']')
	return b.String()
}

// TestApplyRules pins the documented rules with readable cases.
func TestApplyRules(t *testing.T) {
	a1 := Member{NodeID: "a", Incarnation: 1, Addr: "a:1", Slots: 2, Labels: map[string]string{"host": "h1"}}
	v, err := Apply(View{}, Change{Kind: ChangeJoin, Member: a1})
	if err != nil || v.Epoch != 1 {
		t.Fatalf("first join: %v, epoch %d", err, v.Epoch)
	}
	v, _ = Apply(v, Change{Kind: ChangeMonitors, Monitors: []string{"a"}})
	if m, _ := v.Member("a"); !m.Monitor || !m.Live() || v.Epoch != 2 {
		t.Fatalf("after monitors: %s", fmtView(v))
	}

	// A repeated join changes nothing.
	if w, err := Apply(v, Change{Kind: ChangeJoin, Member: a1}); err != nil || w.Epoch != v.Epoch {
		t.Fatalf("repeated join: %v, epoch %d", err, w.Epoch)
	}
	// A rejoin of an alive monitor with a new address keeps the flag.
	a2 := a1
	a2.Incarnation, a2.Addr = 2, "a:2"
	w, err := Apply(v, Change{Kind: ChangeJoin, Member: a2})
	if m, _ := w.Member("a"); err != nil || !m.Monitor || m.Addr != "a:2" || w.Epoch != 3 {
		t.Fatalf("rejoin of an alive monitor: %v, %s", err, fmtView(w))
	}
	// An older incarnation is stale, in every kind of change.
	for _, k := range []ChangeKind{ChangeJoin, ChangeLeave, ChangeDeath} {
		if _, err := Apply(w, Change{Kind: k, Member: a1}); !errors.Is(err, ErrStale) {
			t.Errorf("%s of an older incarnation: %v, want ErrStale", k, err)
		}
	}
	// Death drops the monitor flag; a dead node cannot leave; it rejoins
	// with a higher incarnation, as a plain member.
	d, err := Apply(w, Change{Kind: ChangeDeath, Member: a2})
	if m, _ := d.Member("a"); err != nil || m.State != Dead || m.Monitor {
		t.Fatalf("death: %v, %s", err, fmtView(d))
	}
	if x, err := Apply(d, Change{Kind: ChangeDeath, Member: a2}); err != nil || x.Epoch != d.Epoch {
		t.Errorf("repeated death: %v, epoch %d", err, x.Epoch)
	}
	if _, err := Apply(d, Change{Kind: ChangeLeave, Member: a2}); !errors.Is(err, ErrStale) {
		t.Errorf("leave of a dead node: %v, want ErrStale", err)
	}
	if _, err := Apply(d, Change{Kind: ChangeJoin, Member: a2}); !errors.Is(err, ErrStale) {
		t.Errorf("rejoin of a dead node with its dead incarnation: %v, want ErrStale", err)
	}
	a3 := a2
	a3.Incarnation = 3
	r, err := Apply(d, Change{Kind: ChangeJoin, Member: a3})
	if m, _ := r.Member("a"); err != nil || m.State != Alive || m.Monitor || r.Epoch != d.Epoch+1 {
		t.Fatalf("rejoin after death: %v, %s", err, fmtView(r))
	}
	// Monitors must be live members.
	if _, err := Apply(d, Change{Kind: ChangeMonitors, Monitors: []string{"a"}}); err == nil || errors.Is(err, ErrStale) {
		t.Errorf("a dead monitor: %v, want a non-stale error", err)
	}
	if _, err := Apply(r, Change{Kind: ChangeMonitors, Monitors: []string{"zz"}}); err == nil {
		t.Errorf("a monitor that is no member: no error")
	}
	// Labels that differ only in which key has an empty value still differ.
	e1 := Member{NodeID: "e", Incarnation: 1, Addr: "e:1", Labels: map[string]string{"x": ""}}
	e, _ := Apply(View{}, Change{Kind: ChangeJoin, Member: e1})
	e2 := e1
	e2.Labels = map[string]string{"y": ""}
	if f, err := Apply(e, Change{Kind: ChangeJoin, Member: e2}); err != nil || f.Epoch != e.Epoch+1 || !maps.Equal(f.Members[0].Labels, e2.Labels) {
		t.Errorf("join with other labels {y:\"\"} over {x:\"\"}: %v, %s", err, fmtView(f))
	}
}

// randomChange draws a change that is plausible for v: mostly about the
// members' current incarnations, sometimes about older, newer or unknown
// ones, so that every outcome occurs.
func randomChange(rng *rand.Rand, v View) Change {
	ids := []string{"a", "b", "c", "d", "e", "f"}
	id := ids[rng.IntN(len(ids))]
	inc := uint64(1)
	if m, ok := v.Member(id); ok {
		inc = max(1, uint64(int64(m.Incarnation)+int64(rng.IntN(4))-1))
		if rng.IntN(3) > 0 {
			inc = m.Incarnation + uint64(rng.IntN(2))
		}
	}
	switch rng.IntN(10) {
	case 0, 1, 2, 3:
		m := Member{NodeID: id, Incarnation: inc, Addr: fmt.Sprintf("%s:%d", id, 7000+rng.IntN(2)), Slots: 1 + rng.IntN(3)}
		switch rng.IntN(3) {
		case 0:
			m.Labels = map[string]string{"host": "h" + strconv.Itoa(rng.IntN(3))}
		case 1:
			m.Labels = map[string]string{"host": "h" + strconv.Itoa(rng.IntN(3)), "zone": "z" + strconv.Itoa(rng.IntN(2))}
		}
		return Change{Kind: ChangeJoin, Member: m}
	case 4, 5:
		return Change{Kind: ChangeLeave, Member: Member{NodeID: id, Incarnation: inc}}
	case 6, 7:
		return Change{Kind: ChangeDeath, Member: Member{NodeID: id, Incarnation: inc}}
	}
	var mons []string
	for _, m := range v.Members {
		if (m.Live() && rng.IntN(2) == 0) || rng.IntN(20) == 0 {
			mons = append(mons, m.NodeID)
		}
	}
	if rng.IntN(20) == 0 {
		mons = append(mons, "zz")
	}
	rng.Shuffle(len(mons), func(i, j int) { mons[i], mons[j] = mons[j], mons[i] })
	return Change{Kind: ChangeMonitors, Monitors: mons}
}

// TestApplyReplayDeterministic draws random sequences of changes, then
// replays each on a second copy of the start: the two must agree on every
// outcome and digest, and both with the twin. The epoch counts exactly the
// changes that altered the view.
func TestApplyReplayDeterministic(t *testing.T) {
	rng := decisionRand(t)
	for run := range 150 {
		start := SingleNode(Member{NodeID: "a", Incarnation: 1, Addr: "a:7000"})
		var seq []Change
		var errs []string
		var digests []uint64
		v, twin := start.Clone(), start.Clone()
		changed := 0
		for range 50 {
			c := randomChange(rng, v)
			seq = append(seq, c)
			next, err := Apply(v, copyChangeDeep(c))
			want, out := naiveApply(twin, c)
			got := classify(err)
			if got == outSame && next.Epoch != v.Epoch {
				got = outChanged
			}
			if got != out {
				t.Fatalf("run %d step %d: %s on %s: %s (%v), twin %s", run, len(seq), c, fmtView(v), got, err, out)
			}
			if out == outChanged {
				changed++
				twin = want
			}
			v = next
			if !viewsIdentical(v, twin) {
				t.Fatalf("run %d step %d: %s\ngot  %s\ntwin %s", run, len(seq), c, fmtView(v), fmtView(twin))
			}
			if err := checkViewShape(v, true); err != nil {
				t.Fatalf("run %d step %d: %v", run, len(seq), err)
			}
			errs = append(errs, fmt.Sprint(err))
			digests = append(digests, v.Digest())
		}
		if v.Epoch != start.Epoch+uint64(changed) {
			t.Fatalf("run %d: epoch %d after %d changes from %d", run, v.Epoch, changed, start.Epoch)
		}
		w := start.Clone()
		for i, c := range seq {
			next, err := Apply(w, copyChangeDeep(c))
			if fmt.Sprint(err) != errs[i] || next.Digest() != digests[i] {
				t.Fatalf("run %d: replay differs at step %d (%s): err %v vs %s", run, i, c, err, errs[i])
			}
			w = next
		}
	}
}

// randomDigestView draws a view whose labels may hold '=' and odd bytes in
// values; keys are plain, as ParseLabels makes them.
func randomDigestView(rng *rand.Rand) View {
	v := View{Epoch: rng.Uint64N(100)}
	n := rng.IntN(6)
	for i := range n {
		m := Member{
			NodeID:      fmt.Sprintf("n%d", i),
			Incarnation: 1 + rng.Uint64N(5),
			Addr:        fmt.Sprintf("10.0.0.%d:%d", i, 7000+rng.IntN(3)),
			Slots:       rng.IntN(5),
			State:       State(1 + rng.IntN(3)),
			Monitor:     rng.IntN(2) == 0,
		}
		if rng.IntN(4) > 0 {
			m.Labels = map[string]string{}
			for range rng.IntN(4) {
				m.Labels[randomLabelKey(rng)] = randomLabelValue(rng)
			}
		}
		v.Members = append(v.Members, m)
	}
	return v
}

func randomLabelKey(rng *rand.Rand) string {
	return string(rune('a' + rng.IntN(4)))
}

func randomLabelValue(rng *rand.Rand) string {
	const chars = "xy=z-:"
	b := make([]byte, rng.IntN(4))
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	return string(b)
}

// mutateView returns a deep copy of v with one field of the view or of one
// member changed, and what it changed.
func mutateView(rng *rand.Rand, v View) (View, string) {
	w := copyViewDeep(v)
	if len(w.Members) == 0 || rng.IntN(12) == 0 {
		switch rng.IntN(3) {
		case 0:
			w.Epoch++
			return w, "epoch"
		case 1:
			w.Members = append(w.Members, Member{NodeID: "zz", Incarnation: 1, Addr: "zz:1", State: Alive})
			return w, "a member added"
		}
		if len(w.Members) == 0 {
			w.Epoch--
			return w, "epoch"
		}
		i := rng.IntN(len(w.Members))
		w.Members = slices.Delete(w.Members, i, i+1)
		return w, "a member removed"
	}
	i := rng.IntN(len(w.Members))
	m := &w.Members[i]
	switch rng.IntN(9) {
	case 0:
		m.NodeID += "x"
		return w, "node ID"
	case 1:
		m.Incarnation++
		return w, "incarnation"
	case 2:
		m.Addr += "0"
		return w, "address"
	case 3:
		m.Slots++
		return w, "slots"
	case 4:
		m.State = State(1 + (int(m.State)+rng.IntN(2))%3)
		return w, "state"
	case 5:
		m.Monitor = !m.Monitor
		return w, "monitor flag"
	case 6:
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		k := randomLabelKey(rng) + "k"
		m.Labels[k] = randomLabelValue(rng)
		return w, "a label added"
	}
	if len(m.Labels) == 0 {
		m.Labels = map[string]string{"h": ""}
		return w, "a label added to none"
	}
	keys := slices.Sorted(maps.Keys(m.Labels))
	k := keys[rng.IntN(len(keys))]
	switch rng.IntN(3) {
	case 0:
		delete(m.Labels, k)
		return w, "a label removed"
	case 1:
		m.Labels[k] += "v"
		return w, "a label value"
	}
	val := m.Labels[k]
	delete(m.Labels, k)
	m.Labels[k+"q"] = val
	return w, "a label key"
}

// TestViewDigestSeesEveryField: changing any one field of a view changes
// its digest; copies and re-built label maps keep it.
func TestViewDigestSeesEveryField(t *testing.T) {
	rng := decisionRand(t)
	what := map[string]int{}
	for range 5000 {
		v := randomDigestView(rng)
		d := v.Digest()
		if c := copyViewDeep(v); c.Digest() != d || v.Clone().Digest() != d {
			t.Fatalf("a copy of %s has another digest", fmtView(v))
		}
		w, changed := mutateView(rng, v)
		what[changed]++
		if w.Digest() == d {
			t.Fatalf("digest unchanged after changing %s:\n%s\n%s", changed, fmtView(v), fmtView(w))
		}
		if v.Digest() != d {
			t.Fatalf("mutating a copy changed the original's digest")
		}
	}
	t.Logf("mutations: %v", what)
	// Labels inserted in another order hash alike.
	a := map[string]string{}
	b := map[string]string{}
	keys := []string{"host", "zone", "rack", "row", "dc"}
	for _, k := range keys {
		a[k] = k + "-v"
	}
	for _, k := range slices.Backward(keys) {
		b[k] = k + "-v"
	}
	va := View{Epoch: 1, Members: []Member{{NodeID: "a", Incarnation: 1, Addr: "a:1", Labels: a, State: Alive}}}
	vb := View{Epoch: 1, Members: []Member{{NodeID: "a", Incarnation: 1, Addr: "a:1", Labels: b, State: Alive}}}
	if va.Digest() != vb.Digest() {
		t.Fatalf("equal labels, different digests")
	}
}
