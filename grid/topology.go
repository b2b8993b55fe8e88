package grid

import (
	"hash/fnv"
	"slices"
	"strings"
)

// Who heartbeats whom. Pure functions of the view, so that the leader can
// tell which nodes observe a given node and how many reports make a
// majority of them.

// FullMeshLimit is the largest number of live members in which every node
// watches every other. Beyond it each node watches RingWatch successors on
// a ring ordered by a hash of the node IDs, so the per-node message rate
// stays flat as the cluster grows.
const (
	FullMeshLimit = 16
	RingWatch     = 8
)

func ringKey(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("ring:"))
	h.Write([]byte(id))
	return splitmix(h.Sum64())
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// ring returns the live members' IDs in ring order.
func ring(v View) []string {
	type pos struct {
		key uint64
		id  string
	}
	live := make([]pos, 0, len(v.Members))
	for _, m := range v.Members {
		if m.Live() {
			live = append(live, pos{ringKey(m.NodeID), m.NodeID})
		}
	}
	slices.SortFunc(live, func(a, b pos) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(live))
	for i, p := range live {
		ids[i] = p.id
	}
	return ids
}

// Targets returns the members node self watches (heartbeats and runs a
// detector for), in node ID order. self need not be a live member (a node
// that was declared dead still watches no one).
func Targets(v View, self string) []string { return neighbours(v, self, 1) }

// Observers returns the live members that watch node id: those whose
// Targets include it, in node ID order.
func Observers(v View, id string) []string { return neighbours(v, id, -1) }

// neighbours returns everyone else in a full mesh, else the RingWatch
// members after id on the ring (dir 1) or before it (dir -1).
func neighbours(v View, id string, dir int) []string {
	r := ring(v)
	pos := slices.Index(r, id)
	if pos < 0 {
		return nil
	}
	if len(r) <= FullMeshLimit {
		out := slices.Delete(slices.Clone(r), pos, pos+1)
		slices.Sort(out)
		return out
	}
	out := make([]string, 0, RingWatch)
	for i := 1; i <= RingWatch && i < len(r); i++ {
		out = append(out, r[(pos+dir*i+len(r))%len(r)])
	}
	slices.Sort(out)
	return out
}

// ReportsNeeded is how many observers of a node must report it dead before
// the monitors declare it: a strict majority of its observers.
func ReportsNeeded(observers int) int {
	if observers <= 0 {
		return 1
	}
	return observers/2 + 1
}

// DesiredMonitors is how many monitors a cluster of live members should
// have, for a configured target (1, 3 or 5): the target, or the largest odd
// number the live members allow, never fewer than one.
func DesiredMonitors(target, live int) int {
	n := min(target, live)
	if n%2 == 0 {
		n--
	}
	return max(n, 1)
}

// PickMonitor chooses the next live member to become a monitor: one on a
// host (then a zone) no monitor is on yet, in rendezvous order so that the
// choice is stable. ok is false when no live member is left.
func PickMonitor(v View, current []string) (id string, ok bool) {
	hosts, zones := map[string]bool{}, map[string]bool{}
	isMon := map[string]bool{}
	for _, c := range current {
		isMon[c] = true
		if m, found := v.Member(c); found {
			hosts[m.Host()] = true
			zones[m.Zone()] = true
		}
	}
	var cands []Member
	for _, m := range v.Live() {
		if !isMon[m.NodeID] {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return "", false
	}
	ranked := Rank(cands, []byte("monitors"), len(cands))
	// Rank keeps one member per host; fall back to all candidates.
	if len(ranked) < len(cands) {
		seen := map[string]bool{}
		for _, m := range ranked {
			seen[m.NodeID] = true
		}
		for _, m := range cands {
			if !seen[m.NodeID] {
				ranked = append(ranked, m)
			}
		}
	}
	for _, pass := range []func(Member) bool{
		func(m Member) bool { return !hosts[m.Host()] && !zones[m.Zone()] },
		func(m Member) bool { return !hosts[m.Host()] },
		func(Member) bool { return true },
	} {
		for _, m := range ranked {
			if pass(m) {
				return m.NodeID, true
			}
		}
	}
	return "", false
}
