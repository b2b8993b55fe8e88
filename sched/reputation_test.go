package sched

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

var repT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestReputationSequences(t *testing.T) {
	r := NewReputation()
	at := func(d time.Duration) time.Time { return repT0.Add(d) }
	check := func(what string, node string, count int, quarantined bool, now time.Time) {
		t.Helper()
		if got := r.Count(node, "m"); got != count {
			t.Errorf("%s: count %d, want %d", what, got, count)
		}
		if got := r.Quarantined(node, "m", now); got != quarantined {
			t.Errorf("%s: quarantined %v, want %v", what, got, quarantined)
		}
	}
	disagree := func(node string, now time.Time, want bool) {
		t.Helper()
		if got := r.Disagreed(node, "m", now); got != want {
			t.Errorf("Disagreed(%s) at %v = %v, want %v", node, now.Sub(repT0), got, want)
		}
	}

	check("unknown pair", "a", 0, false, at(0))
	if len(r.pairs) != 0 {
		t.Fatalf("queries created entries: %v", r.pairs)
	}
	for range 5 {
		r.Agreed("a", "m")
	}
	check("five agreements", "a", 5, false, at(0))

	disagree("a", at(0), false)
	check("one disagreement resets the count", "a", 0, false, at(0))
	disagree("a", at(time.Minute), false)
	r.Agreed("a", "m")
	check("an agreement breaks the run", "a", 1, false, at(time.Minute))
	disagree("a", at(2*time.Minute), false)
	disagree("a", at(3*time.Minute), false)
	disagree("a", at(4*time.Minute), true)
	check("three in a row", "a", 0, true, at(4*time.Minute))
	if r.Quarantined("a", "other", at(4*time.Minute)) || r.Quarantined("b", "m", at(4*time.Minute)) {
		t.Error("quarantine spilled over to another module or node")
	}
	check("just before the end", "a", 0, true, at(4*time.Minute+QuarantineFor-time.Nanosecond))
	disagree("a", at(5*time.Minute), false) // a late result: no extension
	r.Agreed("b", "m")
	disagree("b", at(5*time.Minute), false)
	r.Disagreed("c", "x", at(5*time.Minute))
	r.Disagreed("c", "x", at(5*time.Minute))
	r.Disagreed("c", "x", at(5*time.Minute))
	want := []Quarantine{
		{Node: "a", Module: "m", Until: at(4*time.Minute + QuarantineFor), Disagreements: 4},
		{Node: "c", Module: "x", Until: at(5*time.Minute + QuarantineFor), Disagreements: 3},
	}
	if got := r.Quarantines(at(6 * time.Minute)); !slices.Equal(got, want) {
		t.Errorf("Quarantines = %+v, want %+v", got, want)
	}
	check("at the end", "a", 0, false, at(4*time.Minute+QuarantineFor))
	if got := r.Quarantines(at(4*time.Minute + QuarantineFor)); !slices.Equal(got, want[1:]) {
		t.Errorf("Quarantines after a's end = %+v, want %+v", got, want[1:])
	}

	// Probation: the first disagreement after the quarantine quarantines again.
	end := at(4*time.Minute + QuarantineFor)
	disagree("a", end.Add(time.Minute), true)
	check("probation broken", "a", 0, true, end.Add(time.Minute))
	// An agreement after the quarantine ends probation: three in a row again.
	end = end.Add(time.Minute + QuarantineFor)
	r.Agreed("a", "m")
	disagree("a", end, false)
	disagree("a", end, false)
	disagree("a", end, true)

	// An agreement arriving during a quarantine does not lift it.
	r.Agreed("a", "m")
	check("agreement while quarantined", "a", 1, true, end)
}

func TestTrusted(t *testing.T) {
	for _, c := range []struct {
		count int
		u     float64
		want  bool
	}{
		{-1, 0, false}, {0, 0, false}, {1, 0, false}, {9, 0, false}, {TrustAfter - 1, 0, false},
		{10, 0, true}, {10, 0.5, true}, {10, 0.8999, true}, {10, 0.9, false}, {10, 0.95, false}, {10, math.Nextafter(1, 0), false},
		{20, 0.9499, true}, {20, 0.95, false},
		{1000, 0.998, true}, {1000, 0.999, false},
		{10, math.NaN(), false},
	} {
		if got := Trusted(c.count, c.u); got != c.want {
			t.Errorf("Trusted(%d, %v) = %v, want %v", c.count, c.u, got, c.want)
		}
	}
	// Over a fine grid of draws, a node at count n is trusted for a share of
	// about 1-1/n of them.
	for _, n := range []int{10, 11, 40} {
		yes := 0
		const draws = 10000
		for i := range draws {
			if Trusted(n, (float64(i)+0.5)/draws) {
				yes++
			}
		}
		if want := draws * (1 - 1/float64(n)); math.Abs(float64(yes)-want) > 1 {
			t.Errorf("count %d: trusted for %d of %d draws, want %.0f", n, yes, draws, want)
		}
	}
}

// repEvent is one recorded result for the naive twin.
type repEvent struct {
	node, module string
	agreed       bool
	at           time.Time
}

// naiveRep is Reputation's deliberately naive twin: it keeps every result
// and answers each question by reading the history again. It assumes, as
// the coordinator's clock gives, that results are recorded in time order.
type naiveRep struct{ history []repEvent }

func (n *naiveRep) of(node, module string) []repEvent {
	var out []repEvent
	for _, e := range n.history {
		if e.node == node && e.module == module {
			out = append(out, e)
		}
	}
	return out
}

// quarantining reports, for each event of a pair, whether it started a
// quarantine: a disagreement ending a run of at least QuarantineAfter, at a
// time when no earlier quarantine was in force.
func quarantining(evs []repEvent) []bool {
	out := make([]bool, len(evs))
	for i, e := range evs {
		if e.agreed {
			continue
		}
		run := 0
		for j := i; j >= 0 && !evs[j].agreed; j-- {
			run++
		}
		inForce := false
		for j := range i {
			if out[j] && e.at.Before(evs[j].at.Add(QuarantineFor)) {
				inForce = true
			}
		}
		out[i] = run >= QuarantineAfter && !inForce
	}
	return out
}

func (n *naiveRep) count(node, module string) int {
	evs := n.of(node, module)
	c := 0
	for i := len(evs) - 1; i >= 0 && evs[i].agreed; i-- {
		c++
	}
	return c
}

// quarantine returns the end of the quarantine in force at now, if any, and
// the disagreements in a row, from a pair's events and quarantining(evs).
func quarantineAt(evs []repEvent, starts []bool, now time.Time) (until time.Time, run int, ok bool) {
	for i, q := range starts {
		if q && now.Before(evs[i].at.Add(QuarantineFor)) {
			until, ok = evs[i].at.Add(QuarantineFor), true
		}
	}
	for i := len(evs) - 1; i >= 0 && !evs[i].agreed; i-- {
		run++
	}
	return until, run, ok
}

// TestReputationMatchesNaive drives Reputation and its twin with random
// sequences of results over a few nodes and modules and a clock that moves
// forward in random steps, and compares every answer; it also checks that
// only pairs that have had a result take memory.
func TestReputationMatchesNaive(t *testing.T) {
	rng := decideRand(t)
	nodes, modules := []string{"a", "b", "c"}, []string{"m1", "m2"}
	for range 200 {
		r, twin := NewReputation(), &naiveRep{}
		if rng.IntN(2) == 0 {
			r = &Reputation{} // the zero value works too
		}
		now := repT0
		for range 60 {
			now = now.Add(time.Duration(rng.IntN(7)) * time.Minute / 2)
			node, module := nodes[rng.IntN(len(nodes))], modules[rng.IntN(len(modules))]
			agreed := rng.IntN(10) < 4
			twin.history = append(twin.history, repEvent{node, module, agreed, now})
			if agreed {
				r.Agreed(node, module)
			} else {
				evs := twin.of(node, module)
				want := quarantining(evs)[len(evs)-1]
				if got := r.Disagreed(node, module, now); got != want {
					t.Fatalf("history %v: Disagreed(%s, %s) = %v, want %v", twin.history, node, module, got, want)
				}
			}

			type pairHistory struct {
				evs    []repEvent
				starts []bool
			}
			hist := map[repKey]pairHistory{}
			for _, n := range nodes {
				for _, m := range modules {
					if c := twin.count(n, m); r.Count(n, m) != c {
						t.Fatalf("history %v: Count(%s, %s) = %d, want %d", twin.history, n, m, r.Count(n, m), c)
					}
					evs := twin.of(n, m)
					hist[repKey{n, m}] = pairHistory{evs, quarantining(evs)}
				}
			}
			for _, later := range []time.Duration{0, time.Minute, QuarantineFor - 1, QuarantineFor} {
				at := now.Add(later)
				var want []Quarantine
				for _, n := range nodes {
					for _, m := range modules {
						h := hist[repKey{n, m}]
						until, run, ok := quarantineAt(h.evs, h.starts, at)
						if got := r.Quarantined(n, m, at); got != ok {
							t.Fatalf("history %v: Quarantined(%s, %s) at %v = %v, want %v", twin.history, n, m, at.Sub(repT0), got, ok)
						}
						if ok {
							want = append(want, Quarantine{Node: n, Module: m, Until: until, Disagreements: run})
						}
					}
				}
				if got := r.Quarantines(at); !slices.Equal(got, want) {
					t.Fatalf("history %v: Quarantines at %v = %+v, want %+v", twin.history, at.Sub(repT0), got, want)
				}
			}

			touched := map[repKey]bool{}
			for _, e := range twin.history {
				touched[repKey{e.node, e.module}] = true
			}
			for k, e := range r.pairs {
				if !touched[k] || e.agreed == 0 && e.disagreed == 0 {
					t.Fatalf("entry %+v = %+v holds nothing worth keeping", k, e)
				}
			}
		}
	}
}

func ExampleTrusted() {
	r := NewReputation()
	for range TrustAfter {
		r.Agreed("node-1", "sha256:ab12")
	}
	n := r.Count("node-1", "sha256:ab12")
	fmt.Println(n, Trusted(n, 0.5), Trusted(n, 0.95))
	// Output: 10 true false
}
