package sched

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridnode/gridnode/grid"
)

var decideSeed = flag.Uint64("decide.seed", 0, "seed of the randomised tests of placement, vote and reputation (0: a new one, logged)")

// decideRand returns the generator of a randomised test and logs its seed,
// so that a failure replays with -decide.seed.
func decideRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *decideSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -decide.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 0x243f6a8885a308d3))
}

func placeMember(id, host, zone string, slots int, state grid.State) grid.Member {
	labels := map[string]string{}
	if host != "" {
		labels["host"] = host
	}
	if zone != "" {
		labels["zone"] = zone
	}
	return grid.Member{NodeID: id, Addr: id + ":1", Labels: labels, Slots: slots, State: state}
}

// placeView builds a view the way grid keeps one: members sorted by node ID.
func placeView(ms ...grid.Member) grid.View {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b grid.Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return grid.View{Epoch: 1, Members: ms}
}

func placeIDs(ms []grid.Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.NodeID
	}
	return ids
}

// rankingOf is the full rendezvous ranking of ms for key, best first. It asks
// grid.Rank for all of them with every host and zone made unique, so that
// anti-affinity never skips anyone and the first pass takes them in rank
// order; the slots (the weights) are kept.
func rankingOf(ms []grid.Member, key string) []grid.Member {
	byID := map[string]grid.Member{}
	relabelled := make([]grid.Member, len(ms))
	for i, m := range ms {
		byID[m.NodeID] = m
		relabelled[i] = grid.Member{NodeID: m.NodeID, Slots: m.Slots, State: m.State,
			Labels: map[string]string{"host": "h/" + m.NodeID, "zone": "z/" + m.NodeID}}
	}
	out := grid.Rank(relabelled, []byte(key), len(ms))
	for i, m := range out {
		out[i] = byID[m.NodeID]
	}
	return out
}

// naivePlace is PlaceExecutors' deliberately naive twin: rank every member
// of the view, dead ones too, then walk that ranking twice with maps,
// dropping the dead, the skipped and the avoided as it meets them. It filters
// after ranking where PlaceExecutors filters before, so agreement between the
// two is also the rendezvous property that filtering relies on.
func naivePlace(v grid.View, itemID string, k int, avoid map[string]bool, skip func(grid.Member) bool) []string {
	eligible := func(m grid.Member) bool {
		return m.State == grid.Alive && !avoid[m.Host()] && (skip == nil || !skip(m))
	}
	all := rankingOf(v.Members, itemID)
	var out []string
	hosts, zones := map[string]bool{}, map[string]bool{}
	for _, m := range all {
		if len(out) < k && eligible(m) && !hosts[m.Host()] && !zones[m.Zone()] {
			out = append(out, m.NodeID)
			hosts[m.Host()], zones[m.Zone()] = true, true
		}
	}
	for _, m := range all {
		if len(out) < k && eligible(m) && !hosts[m.Host()] {
			out = append(out, m.NodeID)
			hosts[m.Host()] = true
		}
	}
	return out
}

// randomPlaceView draws a small view where hosts are often shared, zones
// sometimes missing, capacities uneven and some members not alive.
func randomPlaceView(rng *rand.Rand) grid.View {
	n := 1 + rng.IntN(12)
	ms := make([]grid.Member, n)
	for i := range ms {
		host := ""
		if rng.IntN(3) > 0 {
			host = fmt.Sprintf("h%d", rng.IntN(6))
		}
		zone := ""
		if rng.IntN(4) > 0 {
			zone = fmt.Sprintf("z%d", rng.IntN(3))
		}
		state := grid.Alive
		switch rng.IntN(6) {
		case 0:
			state = grid.Dead
		case 1:
			state = grid.Left
		}
		ms[i] = placeMember(fmt.Sprintf("n%02d", i), host, zone, rng.IntN(5), state)
	}
	return placeView(ms...)
}

func TestPlaceExecutorsScenarios(t *testing.T) {
	alive := grid.Alive
	threeHosts := placeView(
		placeMember("a1", "ha", "", 1, alive), placeMember("a2", "ha", "", 1, alive),
		placeMember("b1", "hb", "", 1, alive), placeMember("b2", "hb", "", 1, alive),
		placeMember("c1", "hc", "", 1, alive), placeMember("c2", "hc", "", 1, alive),
	)
	hostsOf := func(ms []grid.Member) []string {
		var hs []string
		for _, m := range ms {
			hs = append(hs, m.Host())
		}
		slices.Sort(hs)
		return hs
	}
	for i := range 50 {
		item := fmt.Sprintf("item-%d", i)
		if got := PlaceExecutors(threeHosts, item, 0, nil, nil); got != nil {
			t.Fatalf("k=0: got %v, want nil", placeIDs(got))
		}
		if got := PlaceExecutors(grid.View{}, item, 3, nil, nil); len(got) != 0 {
			t.Fatalf("empty view: got %v", placeIDs(got))
		}
		if got := hostsOf(PlaceExecutors(threeHosts, item, 3, nil, nil)); !slices.Equal(got, []string{"ha", "hb", "hc"}) {
			t.Fatalf("k=3 over 3 hosts: hosts %v", got)
		}
		if got := PlaceExecutors(threeHosts, item, 5, nil, nil); len(got) != 3 {
			t.Fatalf("k=5 over 3 hosts: got %v, want one per host", placeIDs(got))
		}
		got := hostsOf(PlaceExecutors(threeHosts, item, 3, map[string]bool{"hb": true}, nil))
		if !slices.Equal(got, []string{"ha", "hc"}) {
			t.Fatalf("avoiding hb: hosts %v", got)
		}
		all := map[string]bool{"ha": true, "hb": true, "hc": true}
		if got := PlaceExecutors(threeHosts, item, 3, all, nil); len(got) != 0 {
			t.Fatalf("every host avoided: got %v", placeIDs(got))
		}
		// Skipping one node of a host leaves its sibling eligible.
		got2 := PlaceExecutors(threeHosts, item, 3, nil, func(m grid.Member) bool { return m.NodeID == "a1" })
		if hs := hostsOf(got2); !slices.Equal(hs, []string{"ha", "hb", "hc"}) || slices.Contains(placeIDs(got2), "a1") {
			t.Fatalf("skipping a1: got %v", placeIDs(got2))
		}
	}

	t.Run("not alive", func(t *testing.T) {
		v := placeView(placeMember("d", "", "", 8, grid.Dead), placeMember("l", "", "", 8, grid.Left),
			placeMember("x", "", "", 1, alive))
		for i := range 50 {
			var asked []string
			got := PlaceExecutors(v, fmt.Sprint(i), 3, nil, func(m grid.Member) bool {
				asked = append(asked, m.NodeID)
				return false
			})
			if !slices.Equal(placeIDs(got), []string{"x"}) || !slices.Equal(asked, []string{"x"}) {
				t.Fatalf("got %v, skip asked about %v: want only the live x", placeIDs(got), asked)
			}
		}
	})

	t.Run("zones", func(t *testing.T) {
		v := placeView(placeMember("a1", "h1", "a", 4, alive), placeMember("a2", "h2", "a", 4, alive),
			placeMember("a3", "h3", "a", 4, alive), placeMember("b", "h4", "b", 1, alive),
			placeMember("c", "h5", "c", 1, alive))
		for i := range 200 {
			got := PlaceExecutors(v, fmt.Sprint("z", i), 3, nil, nil)
			zones := map[string]bool{}
			for _, m := range got {
				zones[m.Zone()] = true
			}
			if len(zones) != 3 {
				t.Fatalf("item %d: %v spans zones %v, want a, b and c", i, placeIDs(got), zones)
			}
		}
	})
}

// TestPlaceExecutorsMatchesNaive compares PlaceExecutors with its naive twin
// on random views, filters and k, and checks the invariants on the way.
func TestPlaceExecutorsMatchesNaive(t *testing.T) {
	rng := decideRand(t)
	for n := range 3000 {
		v := randomPlaceView(rng)
		item := fmt.Sprintf("job-%d/item-%d", rng.IntN(1000), n)
		k := rng.IntN(6)
		avoid := map[string]bool{}
		for range rng.IntN(3) {
			avoid[fmt.Sprintf("h%d", rng.IntN(6))] = true
		}
		skipped := map[string]bool{}
		for _, m := range v.Members {
			if rng.IntN(5) == 0 {
				skipped[m.NodeID] = true
			}
		}
		var skip func(grid.Member) bool
		if len(skipped) > 0 || rng.IntN(2) == 0 {
			skip = func(m grid.Member) bool { return skipped[m.NodeID] }
		}

		got := PlaceExecutors(v, item, k, avoid, skip)
		ids := placeIDs(got)
		if want := naivePlace(v, item, k, avoid, skip); !slices.Equal(ids, want) {
			t.Fatalf("view %+v item %q k %d avoid %v skip %v:\ngot  %v\nwant %v", v.Members, item, k, avoid, skipped, ids, want)
		}

		hosts := map[string]bool{}
		eligibleHosts := map[string]bool{}
		for _, m := range v.Members {
			if m.Live() && !avoid[m.Host()] && !skipped[m.NodeID] {
				eligibleHosts[m.Host()] = true
			}
		}
		for _, m := range got {
			switch {
			case hosts[m.Host()]:
				t.Fatalf("%v: two executors on host %s", ids, m.Host())
			case !m.Live():
				t.Fatalf("%v: %s is not alive", ids, m.NodeID)
			case skipped[m.NodeID]:
				t.Fatalf("%v: %s was skipped", ids, m.NodeID)
			case avoid[m.Host()]:
				t.Fatalf("%v: host %s was to be avoided", ids, m.Host())
			}
			hosts[m.Host()] = true
		}
		if want := min(k, len(eligibleHosts)); len(got) != want {
			t.Fatalf("%v: %d executors, want %d (k %d, %d eligible hosts)", ids, len(got), want, k, len(eligibleHosts))
		}
	}
}

// TestPlaceExecutorsStableWhenMemberRemoved: removing a member from the view
// moves only the items it was placed on.
func TestPlaceExecutorsStableWhenMemberRemoved(t *testing.T) {
	rng := decideRand(t)
	for range 5 {
		var ms []grid.Member
		for i := range 8 {
			ms = append(ms, placeMember(fmt.Sprintf("n%d", i), fmt.Sprintf("h%d", rng.IntN(6)),
				fmt.Sprintf("z%d", rng.IntN(3)), 1+rng.IntN(3), grid.Alive))
		}
		v := placeView(ms...)
		const items = 500
		before := make([][]string, items)
		for i := range items {
			before[i] = placeIDs(PlaceExecutors(v, fmt.Sprint("item-", i), 3, nil, nil))
		}
		for gone := range ms {
			w := placeView(slices.Delete(slices.Clone(v.Members), gone, gone+1)...)
			id := v.Members[gone].NodeID
			held := 0
			for i := range items {
				after := placeIDs(PlaceExecutors(w, fmt.Sprint("item-", i), 3, nil, nil))
				if slices.Contains(before[i], id) {
					held++
				} else if !slices.Equal(before[i], after) {
					t.Fatalf("removing %s moved item %d, which it did not hold: %v -> %v", id, i, before[i], after)
				}
			}
			if held == 0 {
				t.Logf("%s held no item: nothing to check for it", id)
			}
		}
	}
}

// TestPlaceExecutorsSpread: with k=2 over 3 equal hosts, each host runs about
// two thirds of the items.
func TestPlaceExecutorsSpread(t *testing.T) {
	v := placeView(placeMember("a", "", "", 2, grid.Alive), placeMember("b", "", "", 2, grid.Alive),
		placeMember("c", "", "", 2, grid.Alive))
	const items = 3000
	count := map[string]int{}
	for i := range items {
		for _, m := range PlaceExecutors(v, fmt.Sprintf("spread-%d", i), 2, nil, nil) {
			count[m.NodeID]++
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if share := float64(count[id]) / items; share < 0.6 || share > 0.73 {
			t.Errorf("%s runs %.3f of the items, want about 2/3 (counts %v)", id, share, count)
		}
	}
}

// TestPlaceExecutorsWeighted: a member with twice the slots is picked first
// about twice as often.
func TestPlaceExecutorsWeighted(t *testing.T) {
	v := placeView(placeMember("big", "", "", 8, grid.Alive), placeMember("s1", "", "", 4, grid.Alive),
		placeMember("s2", "", "", 4, grid.Alive), placeMember("s3", "", "", 4, grid.Alive))
	const items = 6000
	first := map[string]int{}
	for i := range items {
		first[PlaceExecutors(v, fmt.Sprintf("w-%d", i), 2, nil, nil)[0].NodeID]++
	}
	small := float64(first["s1"]+first["s2"]+first["s3"]) / 3
	if ratio := float64(first["big"]) / small; ratio < 1.7 || ratio > 2.3 {
		t.Errorf("big was first %.2f times as often as a small member, want about 2 (counts %v)", ratio, first)
	}
}

// TestPlaceExecutorsOrderIndependent: the result depends on the members, not
// on their order in the view.
func TestPlaceExecutorsOrderIndependent(t *testing.T) {
	rng := decideRand(t)
	for n := range 500 {
		v := randomPlaceView(rng)
		item := fmt.Sprint("o-", n)
		k := 1 + rng.IntN(4)
		want := placeIDs(PlaceExecutors(v, item, k, nil, nil))
		shuffled := grid.View{Epoch: v.Epoch, Members: slices.Clone(v.Members)}
		rng.Shuffle(len(shuffled.Members), func(i, j int) {
			shuffled.Members[i], shuffled.Members[j] = shuffled.Members[j], shuffled.Members[i]
		})
		if got := placeIDs(PlaceExecutors(shuffled, item, k, nil, nil)); !slices.Equal(got, want) {
			t.Fatalf("members %v: got %v, sorted view gave %v", placeIDs(shuffled.Members), got, want)
		}
		if again := placeIDs(PlaceExecutors(v, item, k, nil, nil)); !slices.Equal(again, want) {
			t.Fatalf("same inputs, different result: %v then %v", want, again)
		}
	}
}
