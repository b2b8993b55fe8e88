package sched

import (
	"slices"

	"github.com/gridnode/gridnode/grid"
)

// The job ledger: a job's record, item inputs and result log are kept by
// its holders, not by the node that accepted it alone.
//
//   - Holders are chosen when the job is accepted: the accepting node
//     first, then up to ledgerReplicas-1 members on other hosts, ranked by
//     rendezvous on the job ID. Every copy carries the list. The list only
//     grows: when fewer than ledgerReplicas holders are alive (one left, or
//     has been dead for holderGrace), the home copies the job to one more
//     member and appends it (up to maxHolders). Growing by one keeps every
//     majority of the old list meeting every majority of the new one, and
//     a list that never drops a member needs no rule for one that returns.
//   - The job's home is the first holder that is alive in the view: a pure
//     function of (view, holders), so every node that holds the view and the
//     list names the same home. Only the home writes.
//   - A write (the job itself, a batch of results, a state change) is
//     acknowledged once a majority of the holders has it durably.
//   - A node that becomes home (the one before died, left or restarted)
//     first gathers: it asks the live holders to promise its term (the
//     epoch of the view that made it home) and to say what they hold, and
//     serves only once a majority answered. It takes the best copy among
//     them (newest term, then longest log), which holds every acknowledged
//     write, since any two majorities share a holder.
//   - A holder refuses writes of a term older than its promise, so a home
//     that was declared dead, or cut off, can no longer get a majority: it
//     acknowledges nothing more, and whatever it wrote alone is replaced.
//   - Within a term one home writes, in order, so holders' logs of one term
//     are prefixes of each other. A holder whose log comes from another term
//     keeps it only if it is a prefix of the home's (same term as the copy
//     the home took over from, and no longer than it was then); otherwise
//     it is rewritten whole.

// ledgerReplicas is how many holders a job has where there are as many
// hosts: any one of them may be lost without losing anything acknowledged.
const ledgerReplicas = 3

// maxHolders caps a job's holders as the list grows after losses; past it
// a job waits for its holders to come back.
const maxHolders = 2*ledgerReplicas - 1

// wantHolder reports whether a job whose list is holders, of which live
// are alive, is to be copied to one more member.
func wantHolder(holders, live int) bool {
	return live < ledgerReplicas && holders < maxHolders
}

// newHolder picks the member a job is copied to when it wants one more
// holder: alive, not a holder yet, on a host no live holder is on; by
// rendezvous on the job ID. False when there is none.
func newHolder(v grid.View, holders []string, jobID string) (string, bool) {
	used := map[string]bool{}
	for _, h := range holders {
		if m, ok := v.Member(h); ok && m.Live() {
			used[m.Host()] = true
		}
	}
	var cands []grid.Member
	for _, m := range v.Live() {
		if !slices.Contains(holders, m.NodeID) && !used[m.Host()] {
			cands = append(cands, m)
		}
	}
	if r := grid.Rank(cands, []byte(jobID), 1); len(r) == 1 {
		return r[0].NodeID, true
	}
	return "", false
}

// pickHolders chooses a job's holders: self first, then up to r-1 of the
// live members on other hosts, by rendezvous on the job ID with
// anti-affinity (grid.Rank).
func pickHolders(live []grid.Member, self grid.Member, jobID string, r int) []string {
	out := []string{self.NodeID}
	var others []grid.Member
	for _, m := range live {
		if m.NodeID != self.NodeID && m.Host() != self.Host() {
			others = append(others, m)
		}
	}
	for _, m := range grid.Rank(others, []byte(jobID), r-1) {
		out = append(out, m.NodeID)
	}
	return out
}

// actingHome is the home of a job with these holders under v: the first
// holder alive in v; "" when none is.
func actingHome(v grid.View, holders []string) string {
	for _, h := range holders {
		if m, ok := v.Member(h); ok && m.Live() {
			return h
		}
	}
	return ""
}

// majority is how many of n holders make a majority.
func majority(n int) int { return n/2 + 1 }

// copyState is what one holder says it holds of a job.
type copyState struct {
	Has     bool   `cbor:"1,keyasint,omitempty"` // a complete copy (not one still being received)
	Term    uint64 `cbor:"2,keyasint,omitempty"` // the term of the home that wrote its last results
	Results uint64 `cbor:"3,keyasint,omitempty"` // its last result seq
}

// better reports whether copy a is to be preferred to b when a new home
// takes over: a complete copy first, then the newest term, then the longest
// log.
func better(a, b copyState) bool {
	if a.Has != b.Has {
		return a.Has
	}
	if a.Term != b.Term {
		return a.Term > b.Term
	}
	return a.Results > b.Results
}

// termInfo is the home's side of an append: its term, and where its log
// came from when it took over.
type termInfo struct {
	Term      uint64 // the epoch at which the home took over
	PrevTerm  uint64 // the term of the copy it took over from
	TermStart uint64 // the first result seq of its term
}

// appendVerdict is what a holder does with a write of the home's.
type appendVerdict uint8

const (
	verdictApply appendVerdict = iota // its log continues the home's
	verdictAdopt                      // its log is a prefix of the home's: take the home's term, then apply
	verdictReset                      // its log is not the home's: drop its results, start again from seq 1
	verdictStale                      // it promised a newer term: the sender is not the home any more
)

// judgeAppend decides what a holder whose copy is h, having promised
// promise, does with a write from a home with term t.
func judgeAppend(h copyState, promise uint64, t termInfo) appendVerdict {
	switch {
	case t.Term < promise || t.Term < h.Term:
		return verdictStale
	case h.Term == t.Term:
		return verdictApply
	case h.Term == t.PrevTerm && h.Results < t.TermStart:
		return verdictAdopt
	}
	return verdictReset
}
