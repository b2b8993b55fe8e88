package grid

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// randomTopologyView draws a view of live alive members and ended ended
// ones (dead or left), with random node IDs so that the ring differs from
// draw to draw.
func randomTopologyView(rng *rand.Rand, live, ended int) View {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	seen := map[string]bool{}
	var v View
	v.Epoch = 1 + rng.Uint64N(1000)
	for len(v.Members) < live+ended {
		b := make([]byte, 1+rng.IntN(10))
		for i := range b {
			b[i] = chars[rng.IntN(len(chars))]
		}
		id := "n" + string(b)
		if seen[id] {
			continue
		}
		seen[id] = true
		st := Alive
		if len(v.Members) >= live {
			st = Dead
			if rng.IntN(2) == 0 {
				st = Left
			}
		}
		v.Members = append(v.Members, Member{NodeID: id, Incarnation: 1, Addr: id + ":7000", State: st})
	}
	slices.SortFunc(v.Members, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return v
}

func liveIDs(v View) []string {
	var out []string
	for _, m := range v.Live() {
		out = append(out, m.NodeID)
	}
	return out
}

// checkWatchList checks one Targets or Observers answer for node self:
// sorted, unique, live members only, never self.
func checkWatchList(v View, self string, got []string) error {
	for i, id := range got {
		if i > 0 && got[i-1] >= id {
			return fmt.Errorf("not sorted and unique: %v", got)
		}
		if id == self {
			return fmt.Errorf("contains itself: %v", got)
		}
		if m, ok := v.Member(id); !ok || !m.Live() {
			return fmt.Errorf("contains %s, not a live member", id)
		}
	}
	return nil
}

// exhaustiveTopologyLimit is the largest number of live members for which
// checkTopology looks at every member and every pair; beyond it, it samples
// (each Targets call ranks the whole ring, and the race detector is slow).
const exhaustiveTopologyLimit = 48

// checkTopology checks Targets and Observers of v: every member and pair up
// to exhaustiveTopologyLimit live members, a sample of probes beyond.
func checkTopology(t *testing.T, rng *rand.Rand, v View) {
	t.Helper()
	live := liveIDs(v)
	targets := map[string][]string{}
	observers := map[string][]string{}
	get := func(id string) ([]string, []string) {
		t.Helper()
		if tg, ok := targets[id]; ok {
			return tg, observers[id]
		}
		tg, ob := Targets(v, id), Observers(v, id)
		m, _ := v.Member(id)
		for what, got := range map[string][]string{"targets": tg, "observers": ob} {
			if err := checkWatchList(v, id, got); err != nil {
				t.Fatalf("%d live: %s of %s: %v", len(live), what, id, err)
			}
			if !m.Live() {
				if len(got) != 0 {
					t.Fatalf("%s %s has %s %v", m.State, id, what, got)
				}
				continue
			}
			if len(live) <= FullMeshLimit {
				want := slices.DeleteFunc(slices.Clone(live), func(x string) bool { return x == id })
				if !slices.Equal(got, want) {
					t.Fatalf("%d live (full mesh): %s of %s = %v, want everyone else %v", len(live), what, id, got, want)
				}
			} else if len(got) != RingWatch {
				t.Fatalf("%d live (ring): %s has %d %s, want %d", len(live), id, len(got), what, RingWatch)
			}
		}
		targets[id], observers[id] = tg, ob
		return tg, ob
	}
	probes := live
	if len(live) > exhaustiveTopologyLimit {
		probes = slices.Clone(live)
		rng.Shuffle(len(probes), func(i, j int) { probes[i], probes[j] = probes[j], probes[i] })
		probes = probes[:8]
	}
	for _, m := range v.Members {
		if !m.Live() {
			get(m.NodeID)
		}
	}
	// Duality: y in Targets(x) iff x in Observers(y). Every pair of probes
	// both ways, and every edge that leaves or enters a probe.
	for _, x := range probes {
		tx, ox := get(x)
		for _, y := range probes {
			_, oy := get(y)
			if inT, inO := slices.Contains(tx, y), slices.Contains(oy, x); inT != inO {
				t.Fatalf("%d live: %s in Targets(%s) = %v but %s in Observers(%s) = %v", len(live), y, x, inT, x, y, inO)
			}
		}
		for _, y := range tx {
			if _, oy := get(y); !slices.Contains(oy, x) {
				t.Fatalf("%d live: %s watches %s, but Observers(%s) = %v", len(live), x, y, y, oy)
			}
		}
		for _, y := range ox {
			if ty, _ := get(y); !slices.Contains(ty, x) {
				t.Fatalf("%d live: Observers(%s) has %s, but Targets(%s) = %v", len(live), x, y, y, ty)
			}
		}
	}
	for _, ghost := range []string{"", "no-such-node"} {
		if tg, ob := Targets(v, ghost), Observers(v, ghost); len(tg) != 0 || len(ob) != 0 {
			t.Fatalf("non-member %q watches %v and is watched by %v", ghost, tg, ob)
		}
	}
	// Ended members take no part: without them, the same answers.
	alive := View{Epoch: v.Epoch, Members: v.Live()}
	for _, x := range probes {
		if !slices.Equal(Targets(alive, x), targets[x]) || !slices.Equal(Observers(alive, x), observers[x]) {
			t.Fatalf("%d live: ended members change what %s watches", len(live), x)
		}
	}
}

// TestTopologyTargetsObserversDuality checks the watch graph of random
// views from 1 to 200 live members: every size up to past the full-mesh
// limit, then a sample.
func TestTopologyTargetsObserversDuality(t *testing.T) {
	rng := decisionRand(t)
	var sizes []int
	for n := 1; n <= FullMeshLimit+RingWatch; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 2*FullMeshLimit, 2*FullMeshLimit+RingWatch)
	sizes = append(sizes, exhaustiveTopologyLimit, 64, 128, 199, 200)
	for range 3 {
		sizes = append(sizes, 41+rng.IntN(160))
	}
	for _, n := range sizes {
		checkTopology(t, rng, randomTopologyView(rng, n, rng.IntN(n/4+3)))
	}
	checkTopology(t, rng, View{})
}

// TestTopologyRingCoversEveryone: beyond the full mesh, the watch graph is
// one ring, so everyone reaches everyone by following targets.
func TestTopologyRingCoversEveryone(t *testing.T) {
	rng := decisionRand(t)
	for _, n := range []int{FullMeshLimit + 1, 50, 200} {
		v := randomTopologyView(rng, n, 3)
		live := liveIDs(v)
		reached := map[string]bool{live[0]: true}
		queue := []string{live[0]}
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			for _, y := range Targets(v, x) {
				if !reached[y] {
					reached[y] = true
					queue = append(queue, y)
				}
			}
		}
		if len(reached) != n {
			t.Fatalf("%d live: only %d reachable through targets", n, len(reached))
		}
	}
}

func TestTopologyReportsNeeded(t *testing.T) {
	table := map[int]int{-1: 1, 0: 1, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4, 8: 5, 15: 8, 16: 9}
	for n, want := range table {
		if got := ReportsNeeded(n); got != want {
			t.Errorf("ReportsNeeded(%d) = %d, want %d", n, got, want)
		}
	}
	for n := 1; n <= 200; n++ {
		r := ReportsNeeded(n)
		if 2*r <= n || 2*(r-1) > n || r > n {
			t.Fatalf("ReportsNeeded(%d) = %d is not the smallest strict majority", n, r)
		}
	}
}

func TestTopologyDesiredMonitors(t *testing.T) {
	// want[target][live] for live = 0..10.
	want := map[int][11]int{
		1: {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		3: {1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3},
		5: {1, 1, 1, 3, 3, 5, 5, 5, 5, 5, 5},
	}
	for target, row := range want {
		for live, w := range row {
			got := DesiredMonitors(target, live)
			if got != w {
				t.Errorf("DesiredMonitors(%d, %d) = %d, want %d", target, live, got, w)
			}
			if got%2 != 1 || got < 1 || got > max(live, 1) || got > target {
				t.Errorf("DesiredMonitors(%d, %d) = %d: want odd, >= 1, <= max(live, 1), <= target", target, live, got)
			}
		}
	}
}

// TestTopologyPickMonitorScenario walks one labelled cluster through its
// monitor picks.
func TestTopologyPickMonitorScenario(t *testing.T) {
	mk := func(id, host, zone string, st State) Member {
		return Member{NodeID: id, Incarnation: 1, Addr: id + ":1", State: st, Slots: 1,
			Labels: map[string]string{"host": host, "zone": zone}}
	}
	v := View{Epoch: 9, Members: []Member{
		mk("m1", "h1", "z1", Alive),
		mk("sh", "h1", "z2", Alive),   // same host as m1 (another zone: mislabelled, still same host)
		mk("sz", "h2", "z1", Alive),   // new host, same zone
		mk("nz", "h3", "z2", Alive),   // new host, new zone
		mk("x1", "h9", "z9", Dead),    // best domains, but dead
		mk("x2", "h8", "z8", Left),    // and left
		mk("x3", "h3", "z2", Dead),    // dead on nz's host
		mk("zz", "h1", "z1", Alive),   // same host and zone
		mk("m0", "h0", "z0", Dead),    // a dead monitor: its domains still count
		mk("n4", "h4", "z0", Alive),   // new host, zone of the dead monitor
		mk("n5", "h5", "", Alive),     // new host, no zone
		mk("n6", "h0", "z6", Alive),   // new zone, dead monitor's host
		mk("n7", "h7", "z1", Alive),   // new host, same zone
		mk("n8", "h8", "z8", Dead),    // dead
		mk("ghostless", "", "", Dead), // dead, no labels
	}}
	slices.SortFunc(v.Members, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	current := []string{"m1", "m0", "not-a-member"}
	// New host and new zone: nz and n5 (no monitor is in zone "").
	var picked []string
	for {
		id, ok := PickMonitor(v, current)
		if !ok {
			break
		}
		if slices.Contains(current, id) {
			t.Fatalf("picked %s, already a monitor", id)
		}
		m, found := v.Member(id)
		if !found || !m.Live() {
			t.Fatalf("picked %s, not a live member", id)
		}
		picked = append(picked, id)
		current = append(current, id)
	}
	// Domains used grow with each pick, so the order is forced up to ties
	// within a class: check the classes.
	if len(picked) != 8 {
		t.Fatalf("picked %v, want all 8 live non-monitors", picked)
	}
	if first := picked[0]; first != "nz" && first != "n5" {
		t.Fatalf("first pick %s, want nz or n5: the only ones on a new host in a new zone", first)
	}
	checkPickOrder(t, v, []string{"m1", "m0", "not-a-member"}, picked)
}

// checkPickOrder replays picks one by one and checks each against the
// preference classes of the moment.
func checkPickOrder(t *testing.T, v View, current, picked []string) {
	t.Helper()
	current = slices.Clone(current)
	for _, id := range picked {
		if err := checkPick(v, current, id, true); err != nil {
			t.Fatalf("after %v: %v", current, err)
		}
		current = append(current, id)
	}
}

// checkPick checks a PickMonitor answer against the naive rules: a live
// non-monitor; on a new host if any candidate is; then in a new zone if any
// candidate on a new host is.
func checkPick(v View, current []string, id string, ok bool) error {
	hosts, zones := map[string]bool{}, map[string]bool{}
	for _, c := range current {
		for _, m := range v.Members {
			if m.NodeID == c {
				hosts[m.Host()] = true
				zones[m.Zone()] = true
			}
		}
	}
	var cands, newHost, newBoth []Member
	for _, m := range v.Members {
		if m.State != Alive || slices.Contains(current, m.NodeID) {
			continue
		}
		cands = append(cands, m)
		if !hosts[m.Host()] {
			newHost = append(newHost, m)
			if !zones[m.Zone()] {
				newBoth = append(newBoth, m)
			}
		}
	}
	if len(cands) == 0 {
		if ok {
			return fmt.Errorf("picked %q with no candidate left", id)
		}
		return nil
	}
	if !ok {
		return fmt.Errorf("picked none, candidates %v", nodeIDsOf(cands))
	}
	in := func(ms []Member) bool {
		return slices.ContainsFunc(ms, func(m Member) bool { return m.NodeID == id })
	}
	switch {
	case !in(cands):
		return fmt.Errorf("picked %s, not a live non-monitor (candidates %v)", id, nodeIDsOf(cands))
	case len(newHost) > 0 && !in(newHost):
		return fmt.Errorf("picked %s on a monitor's host, though %v are on new hosts", id, nodeIDsOf(newHost))
	case len(newBoth) > 0 && !in(newBoth):
		return fmt.Errorf("picked %s, though %v are on new hosts in new zones", id, nodeIDsOf(newBoth))
	}
	return nil
}

func nodeIDsOf(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.NodeID
	}
	return out
}

// TestTopologyPickMonitorRandom checks PickMonitor on random labelled views
// against checkPick, and that it is deterministic: the same answer for the
// same view whatever the order (or repetitions) of current, and whatever
// ended non-monitors the view holds.
func TestTopologyPickMonitorRandom(t *testing.T) {
	rng := decisionRand(t)
	for run := range 1000 {
		n := rng.IntN(25)
		nHosts, nZones := 1+rng.IntN(n+1), rng.IntN(5)
		var v View
		for i := range n {
			m := Member{NodeID: fmt.Sprintf("n%02d", i), Incarnation: 1, Addr: fmt.Sprint(i), Slots: rng.IntN(4),
				State: []State{Alive, Alive, Alive, Dead, Left}[rng.IntN(5)]}
			if rng.IntN(5) > 0 {
				m.Labels = map[string]string{"host": fmt.Sprintf("h%d", rng.IntN(nHosts))}
				if nZones > 0 {
					m.Labels["zone"] = fmt.Sprintf("z%d", rng.IntN(nZones))
				}
			}
			v.Members = append(v.Members, m)
		}
		var current []string
		for _, m := range v.Members {
			if rng.IntN(4) == 0 {
				current = append(current, m.NodeID)
			}
		}
		if rng.IntN(4) == 0 {
			current = append(current, "not-a-member")
		}
		id, ok := PickMonitor(v, current)
		if err := checkPick(v, current, id, ok); err != nil {
			t.Fatalf("run %d: view %s, current %v: %v", run, fmtView(v), current, err)
		}
		shuffled := append(slices.Clone(current), current...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if id2, ok2 := PickMonitor(v, shuffled); id2 != id || ok2 != ok {
			t.Fatalf("run %d: current %v picks %s, reordered %v picks %s", run, current, id, shuffled, id2)
		}
		trimmed := View{Epoch: v.Epoch}
		for _, m := range v.Members {
			if m.Live() || slices.Contains(current, m.NodeID) {
				trimmed.Members = append(trimmed.Members, m)
			}
		}
		if id3, ok3 := PickMonitor(trimmed, current); id3 != id || ok3 != ok {
			t.Fatalf("run %d: ended non-monitors change the pick from %s to %s", run, id, id3)
		}
		// Picking until none is left takes every live non-monitor once.
		cur := slices.Clone(current)
		var picked []string
		for {
			p, ok := PickMonitor(v, cur)
			if !ok {
				break
			}
			if slices.Contains(picked, p) || len(picked) > n {
				t.Fatalf("run %d: %s picked twice", run, p)
			}
			picked = append(picked, p)
			cur = append(cur, p)
		}
		want := 0
		for _, m := range v.Members {
			if m.Live() && !slices.Contains(current, m.NodeID) {
				want++
			}
		}
		if len(picked) != want {
			t.Fatalf("run %d: picked %v, want %d picks", run, picked, want)
		}
		if run%10 == 0 {
			checkPickOrder(t, v, current, picked)
		}
	}
	if _, ok := PickMonitor(View{}, nil); ok {
		t.Fatal("PickMonitor of an empty view: ok")
	}
}
