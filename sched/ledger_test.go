package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gridnode/gridnode/grid"
)

func TestPickHolders(t *testing.T) {
	rng := decideRand(t)
	for round := range 2000 {
		n := 1 + rng.IntN(9)
		var live []grid.Member
		for i := range n {
			live = append(live, placeMember(fmt.Sprintf("n%d", i), fmt.Sprintf("h%d", rng.IntN(4)), "", 1+rng.IntN(4), grid.Alive))
		}
		self := live[rng.IntN(n)]
		job := fmt.Sprintf("n0-1-%d", round)
		got := pickHolders(live, self, job, ledgerReplicas)
		// Naive twin of the count: self, plus one per other host, at most r.
		hosts := map[string]bool{}
		for _, m := range live {
			if m.Host() != self.Host() {
				hosts[m.Host()] = true
			}
		}
		if want := min(ledgerReplicas, 1+len(hosts)); len(got) != want {
			t.Fatalf("round %d: %d holders %v, want %d", round, len(got), got, want)
		}
		if got[0] != self.NodeID {
			t.Fatalf("round %d: holders %v do not start with the accepting node %s", round, got, self.NodeID)
		}
		seen := map[string]bool{}
		for _, id := range got {
			m, _ := placeView(live...).Member(id)
			if seen[m.Host()] {
				t.Fatalf("round %d: holders %v share host %s", round, got, m.Host())
			}
			seen[m.Host()] = true
		}
		// The order of the members does not matter.
		shuffled := slices.Clone(live)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := pickHolders(shuffled, self, job, ledgerReplicas); !slices.Equal(again, got) {
			t.Fatalf("round %d: holders %v, then %v with the members in another order", round, got, again)
		}
	}
}

func TestActingHome(t *testing.T) {
	holders := []string{"a", "b", "c"}
	states := []grid.State{grid.Alive, grid.Dead, grid.Left, 0} // 0: not a member
	for _, sa := range states {
		for _, sb := range states {
			for _, sc := range states {
				var ms []grid.Member
				for i, st := range []grid.State{sa, sb, sc} {
					if st != 0 {
						ms = append(ms, placeMember(holders[i], holders[i], "", 1, st))
					}
				}
				ms = append(ms, placeMember("z", "z", "", 1, grid.Alive)) // alive, not a holder
				v := placeView(ms...)
				want := ""
				for i, st := range []grid.State{sa, sb, sc} {
					if st == grid.Alive {
						want = holders[i]
						break
					}
				}
				if got := actingHome(v, holders); got != want {
					t.Errorf("states %v %v %v: home %q, want %q", sa, sb, sc, got, want)
				}
			}
		}
	}
}

func TestMajority(t *testing.T) {
	for n := 1; n <= 9; n++ {
		m := majority(n)
		if 2*m <= n || 2*(m-1) > n {
			t.Errorf("majority(%d) = %d", n, m)
		}
	}
}

func TestJudgeAppend(t *testing.T) {
	home := termInfo{Term: 7, PrevTerm: 5, TermStart: 11}
	for _, c := range []struct {
		name    string
		h       copyState
		promise uint64
		want    appendVerdict
	}{
		{"same term", copyState{Has: true, Term: 7, Results: 20}, 7, verdictApply},
		{"promised newer", copyState{Has: true, Term: 7, Results: 20}, 8, verdictStale},
		{"wrote newer", copyState{Has: true, Term: 9, Results: 3}, 9, verdictStale},
		{"prefix of the base", copyState{Has: true, Term: 5, Results: 10}, 7, verdictAdopt},
		{"shorter prefix", copyState{Has: true, Term: 5, Results: 2}, 5, verdictAdopt},
		{"longer than the base", copyState{Has: true, Term: 5, Results: 11}, 7, verdictReset},
		{"another older term", copyState{Has: true, Term: 4, Results: 3}, 4, verdictReset},
	} {
		if got := judgeAppend(c.h, c.promise, home); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
}

// The ledger model: holders, homes that take over at growing terms, homes
// that go on writing after they were replaced, and writes that reach any
// subset of the holders. It drives the decisions the store and the node
// make (judgeAppend, better, the takeover's term fields) the way they make
// them, and checks that every write a majority stored is, at its seq, in
// the log of every home that takes over later, and that a holder only ever
// appends to a log that is a prefix of its home's.

type modelEntry struct {
	term uint64
	val  int
}

type modelHolder struct {
	log     []modelEntry
	term    uint64 // copy term: the term of the home whose writes it holds
	promise uint64
}

func (h *modelHolder) copyState() copyState {
	return copyState{Has: true, Term: h.term, Results: uint64(len(h.log))}
}

type modelHome struct {
	id int
	ti termInfo
}

func TestLedgerModel(t *testing.T) {
	rng := decideRand(t)
	for run := range 3000 {
		if err := ledgerModelRun(rng, 3+2*rng.IntN(2), 60); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
}

func ledgerModelRun(rng *rand.Rand, n, steps int) error {
	hs := make([]*modelHolder, n)
	for i := range hs {
		hs[i] = &modelHolder{term: 1, promise: 1}
	}
	homes := []*modelHome{{id: 0, ti: termInfo{Term: 1, TermStart: 1}}}
	acked := map[int]modelEntry{} // seq (1-based) → the acknowledged write there
	next, epoch := 0, uint64(1)
	for range steps {
		switch r := rng.IntN(10); {
		case r < 6: // a write, by the newest home mostly, else by a replaced one
			hm := homes[len(homes)-1]
			if rng.IntN(4) == 0 {
				hm = homes[rng.IntN(len(homes))]
			}
			own := hs[hm.id]
			if own.term != hm.ti.Term || own.promise > hm.ti.Term {
				continue // its own copy follows a newer home: its store refuses the write (Store.Commit)
			}
			next++
			own.log = append(own.log, modelEntry{hm.ti.Term, next})
			seq := len(own.log)
			stored := 1
			for i, h := range hs {
				if i == hm.id || rng.IntN(3) == 0 {
					continue // not reached
				}
				switch judgeAppend(h.copyState(), h.promise, hm.ti) {
				case verdictStale:
					continue
				case verdictReset:
					h.log = nil
				case verdictApply, verdictAdopt:
					if !isPrefix(h.log, own.log) {
						return fmt.Errorf("holder %d appends to a log that is not its home's: %v, home %d's %v", i, h.log, hm.id, own.log)
					}
				}
				h.term, h.promise = hm.ti.Term, max(h.promise, hm.ti.Term)
				h.log = slices.Clone(own.log) // caught up, then the write
				stored++
			}
			if stored >= majority(n) {
				acked[seq] = own.log[seq-1]
			}
		default: // a takeover at a new term, gathering a majority
			epoch++
			id := rng.IntN(n)
			asked := append([]int{id}, rng.Perm(n)...)
			var answered []int
			for _, i := range asked {
				if !slices.Contains(answered, i) && len(answered) < majority(n)+rng.IntN(n-majority(n)+1) {
					answered = append(answered, i)
				}
			}
			best := id
			for _, i := range answered {
				hs[i].promise = max(hs[i].promise, epoch)
				if better(hs[i].copyState(), hs[best].copyState()) {
					best = i
				}
			}
			me := hs[id]
			if best != id && better(hs[best].copyState(), me.copyState()) {
				me.log, me.term = slices.Clone(hs[best].log), hs[best].term
			}
			for seq, e := range acked {
				if seq > len(me.log) || me.log[seq-1] != e {
					return fmt.Errorf("home %d took over at term %d without write %v at seq %d: its log %v", id, epoch, e, seq, me.log)
				}
			}
			ti := termInfo{Term: epoch, PrevTerm: me.term, TermStart: uint64(len(me.log)) + 1}
			me.term, me.promise = epoch, epoch
			homes = append(homes, &modelHome{id: id, ti: ti})
		}
	}
	return nil
}

func isPrefix(a, b []modelEntry) bool {
	return len(a) <= len(b) && slices.Equal(a, b[:len(a)])
}
