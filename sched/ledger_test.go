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
// that go on writing after they were replaced, writes that reach any
// subset of the holders, and homes that add a holder (the list grows, one
// at a time). It drives the decisions the store and the node make
// (judgeAppend, better, the takeover's term fields, the longest list a
// gather learns, a change only once the list before it was acknowledged)
// the way they make them, and checks that every write a majority of its
// list stored is, at its seq, in the log of every home that takes over
// later, and that a holder only ever appends to a log that is a prefix of
// its home's.

type modelEntry struct {
	term uint64
	val  int
}

type modelHolder struct {
	log     []modelEntry
	term    uint64 // copy term: the term of the home whose writes it holds
	promise uint64
	list    int // how many holders its copy's list names (the first ones)
}

func (h *modelHolder) copyState() copyState {
	return copyState{Has: true, Term: h.term, Results: uint64(len(h.log))}
}

type modelHome struct {
	id      int
	ti      termInfo
	settled int // the longest list a write of its was acknowledged under
}

func TestLedgerModel(t *testing.T) {
	rng := decideRand(t)
	for run := range 20000 {
		if err := ledgerModelRun(rng, 3, 80); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
}

func ledgerModelRun(rng *rand.Rand, n, steps int) error {
	hs := make([]*modelHolder, n)
	for i := range hs {
		hs[i] = &modelHolder{term: 1, promise: 1, list: n}
	}
	homes := []*modelHome{{id: 0, ti: termInfo{Term: 1, TermStart: 1}, settled: n}}
	acked := map[int]modelEntry{} // seq (1-based) → the acknowledged write there
	next, epoch := 0, uint64(1)
	// write is one write of home hm's (entry: a new result; else the
	// record alone, as a list change), sent to a random part of its list.
	write := func(hm *modelHome, entry bool) error {
		own := hs[hm.id]
		if own.term != hm.ti.Term || own.promise > hm.ti.Term {
			return nil // its own copy follows a newer home: its store refuses the write (Store.Commit)
		}
		if entry {
			next++
			own.log = append(own.log, modelEntry{hm.ti.Term, next})
		}
		list, stored := own.list, 1
		for i, h := range hs[:list] {
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
			h.list = max(h.list, list)
			stored++
		}
		if stored >= majority(list) {
			if entry {
				acked[len(own.log)] = own.log[len(own.log)-1]
			}
			hm.settled = max(hm.settled, list)
		}
		return nil
	}
	for range steps {
		switch r := rng.IntN(12); {
		case r < 7: // a write, by the newest home mostly, else by a replaced one
			hm := homes[len(homes)-1]
			if rng.IntN(4) == 0 {
				hm = homes[rng.IntN(len(homes))]
			}
			if err := write(hm, true); err != nil {
				return err
			}
		case r < 9: // the newest home adds a holder, once its list was acknowledged
			hm := homes[len(homes)-1]
			own := hs[hm.id]
			if own.list >= maxHolders || hm.settled != own.list || own.term != hm.ti.Term || own.promise > hm.ti.Term {
				continue
			}
			// Sent whole, then caught up: it holds the home's log, under
			// the list as it was; then the home's list grows, and the
			// record goes to the holders as a write.
			hs = append(hs, &modelHolder{log: slices.Clone(own.log), term: hm.ti.Term, promise: hm.ti.Term, list: own.list})
			own.list++
			if err := write(hm, false); err != nil {
				return err
			}
		default: // a takeover at a new term, gathering a majority of the longest list it learns
			epoch++
			id := rng.IntN(len(hs))
			me := hs[id]
			list := me.list
			if id >= list {
				continue // its copy's list does not name it yet: it cannot be the home
			}
			answered := []int{id}
			me.promise = max(me.promise, epoch)
			for {
				for i := range hs[:list] {
					if !slices.Contains(answered, i) && rng.IntN(3) > 0 {
						answered = append(answered, i)
						hs[i].promise = max(hs[i].promise, epoch) // a holder promises as it answers
					}
				}
				longest := list
				for _, i := range answered {
					longest = max(longest, hs[i].list)
				}
				if longest == list {
					break
				}
				list = longest
			}
			if len(answered) < majority(list) {
				continue // it waits: no home at this term
			}
			best := id
			for _, i := range answered {
				if better(hs[i].copyState(), hs[best].copyState()) {
					best = i
				}
			}
			if best != id && better(hs[best].copyState(), me.copyState()) {
				me.log, me.term = slices.Clone(hs[best].log), hs[best].term
			}
			for seq, e := range acked {
				if seq > len(me.log) || me.log[seq-1] != e {
					return fmt.Errorf("home %d took over at term %d without write %v at seq %d: its log %v", id, epoch, e, seq, me.log)
				}
			}
			ti := termInfo{Term: epoch, PrevTerm: me.term, TermStart: uint64(len(me.log)) + 1}
			me.term, me.list = epoch, list
			homes = append(homes, &modelHome{id: id, ti: ti})
		}
	}
	return nil
}

func isPrefix(a, b []modelEntry) bool {
	return len(a) <= len(b) && slices.Equal(a, b[:len(a)])
}
