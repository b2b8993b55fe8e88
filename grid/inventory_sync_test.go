package grid

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// A node that watches a peer's inventory gets it through heartbeats (small
// deltas) and pushes (what does not fit), whole and checked by digest.
func TestInventoryFollowsHeartbeats(t *testing.T) {
	seed := clusterSeed(t)
	synctest.Test(t, func(t *testing.T) {
		s := newSim(t, seed, nil)
		s.startCluster(3)
		a, b := s.nodes["n1"].c, s.nodes["n2"].c
		stop := a.WatchInventory("n2")
		defer stop()

		matches := func() bool {
			got, ok := a.PeerInventory("n2")
			entries, version, digest := b.Inventory().Full()
			if !ok || got.Version != version || got.Digest != digest || len(got.Entries) != len(entries) {
				return false
			}
			for _, e := range entries {
				if g, ok := got.Entries[e.ID]; !ok || g.State != e.State || string(g.Digest) != string(e.Digest) {
					return false
				}
			}
			return true
		}

		// A few executions fit in heartbeats.
		for i := range 5 {
			b.Inventory().Set(Execution{ID: fmt.Sprintf("x%d", i), State: ExecRunning})
		}
		took := s.waitFor(2*time.Second, "5 running executions seen by the watcher", matches)
		t.Logf("5 entries followed in %s", took)

		// Thousands do not: they go by push, and still arrive whole.
		for i := range 3000 {
			b.Inventory().Set(Execution{ID: fmt.Sprintf("job-%04d/item", i), State: ExecFinished, Digest: []byte{byte(i), byte(i >> 8), 7, 7, 7, 7, 7, 7}})
		}
		b.Inventory().Remove("x0", time.Now())
		took = s.waitFor(3*time.Second, "3000 finished executions seen by the watcher", matches)
		t.Logf("3000 entries followed in %s", took)

		// A peer that is not watched gets no inventory at all.
		if _, ok := s.nodes["n3"].c.PeerInventory("n2"); ok {
			t.Error("n3 holds n2's inventory without watching it")
		}

		// The executor is declared dead and rejoins: it abandons what it ran,
		// and the watcher follows the new incarnation from scratch.
		s.net.Partition([]string{"n2"}, []string{"n1", "n3"})
		s.waitFor(5*time.Second, "n2 declared dead", func() bool {
			v, _ := a.View()
			return stateOf(v, "n2") == Dead
		})
		s.net.Heal()
		s.waitFor(10*time.Second, "n2 rejoined and its inventory followed again", func() bool {
			v, _ := a.View()
			m, _ := v.Member("n2")
			got, ok := a.PeerInventory("n2")
			return m.Live() && m.Incarnation == 2 && ok && got.Incarnation == 2 && matches()
		})
		got, _ := a.PeerInventory("n2")
		if e := got.Entries["x1"]; e.State != ExecAbandoned {
			t.Errorf("a running execution of the dead incarnation is %v at the watcher, want abandoned", e.State)
		}
	})
}
