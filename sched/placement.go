package sched

import "github.com/gridnode/gridnode/grid"

// PlaceExecutors returns up to k executors for an item: the capacity-weighted rendezvous ranking
// (grid.Rank) of the live members of v for key itemID, never two on one host, spread over zones,
// after removing every member for which skip(m) is true (its queue is full, it is quarantined for the
// job's module, it already ran this item) and every member whose Host() is in avoidHosts (hosts that
// already hold an execution of this item). Fewer than k when not enough hosts remain.
//
// The filters run before the ranking, not after it: rendezvous ranks each
// member independently of the others, so dropping a candidate never reorders
// the rest, and an item's executors move only when one of them goes away.
// skip may be nil; it is called at most once per live member.
func PlaceExecutors(v grid.View, itemID string, k int, avoidHosts map[string]bool, skip func(m grid.Member) bool) []grid.Member {
	if k <= 0 {
		return nil
	}
	live := v.Live() // a fresh slice: filtering it in place touches nothing of v
	cands := live[:0]
	for _, m := range live {
		if avoidHosts[m.Host()] || (skip != nil && skip(m)) {
			continue
		}
		cands = append(cands, m)
	}
	return grid.Rank(cands, []byte(itemID), k)
}
