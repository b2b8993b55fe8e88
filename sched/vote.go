package sched

import (
	"fmt"
	"slices"
	"strconv"
)

// VotePolicy is a job's replication policy with defaults filled in.
type VotePolicy struct {
	Replicas  int  // executions started at first (target results); >= 1
	Quorum    int  // equal digests that make the canonical outcome; 1..Replicas
	Attempts  int  // most executions ever started for the item (lost ones count); >= Replicas
	MaxErrors int  // lost executions tolerated; one more fails the item; >= 1
	Adaptive  bool // start one execution; a trusted executor's result alone may be accepted
}

// Policy limits. Replicas and attempts are bounded so that one item cannot
// occupy the whole grid; CheckPolicy names them in its errors.
const (
	maxReplicas  = 16
	maxAttempts  = 100
	maxMaxErrors = 100
)

// CheckPolicy validates a policy after defaults: it returns an error naming
// the bad field and the allowed range, nil if the policy is fine. Limits:
// Replicas 1..16, Quorum 1..Replicas, Attempts Replicas..100, MaxErrors 1..100.
// Fields are checked in that order; the first bad one is reported.
func CheckPolicy(p VotePolicy) error {
	switch {
	case p.Replicas < 1 || p.Replicas > maxReplicas:
		return fmt.Errorf("replicas %d is out of range: replicas must be 1..%d", p.Replicas, maxReplicas)
	case p.Quorum < 1:
		return fmt.Errorf("quorum %d is less than 1: quorum must be 1..replicas", p.Quorum)
	case p.Quorum > p.Replicas:
		return fmt.Errorf("quorum %d is more than replicas %d: quorum must be 1..replicas", p.Quorum, p.Replicas)
	case p.Attempts < p.Replicas:
		return fmt.Errorf("attempts %d is less than replicas %d: attempts must be replicas..%d", p.Attempts, p.Replicas, maxAttempts)
	case p.Attempts > maxAttempts:
		return fmt.Errorf("attempts %d is more than %d: attempts must be replicas..%d", p.Attempts, maxAttempts, maxAttempts)
	case p.MaxErrors < 1 || p.MaxErrors > maxMaxErrors:
		return fmt.Errorf("max errors %d is out of range: max errors must be 1..%d", p.MaxErrors, maxMaxErrors)
	}
	return nil
}

// ExecState is where an execution of an item stands, as its coordinator knows it.
type ExecState uint8

// Execution states. Any other value (the zero value included) is read as
// ExecLost: a vote the tally cannot read must neither count for an outcome
// nor keep the item waiting forever.
const (
	ExecPending ExecState = iota + 1 // dispatched, no outcome yet (queued or running)
	ExecDone                         // finished with an outcome digest: it votes
	ExecLost                         // never produced a usable outcome (executor died, worker crashed, cancelled, deadline of the coordinator passed): counts as an error, does not vote
)

func (s ExecState) String() string {
	switch s {
	case ExecPending:
		return "pending"
	case ExecDone:
		return "done"
	case ExecLost:
		return "lost"
	}
	return "exec(" + strconv.Itoa(int(s)) + ")"
}

// Vote is one execution as the tally sees it, in the order executions were started.
type Vote struct {
	Node   string
	State  ExecState
	Digest string // for ExecDone; ignored otherwise
}

// VerdictKind is what the coordinator is to do with an item.
type VerdictKind uint8

// Verdict kinds.
const (
	VerdictWait     VerdictKind = iota + 1 // outcomes are still coming
	VerdictDispatch                        // start Dispatch more executions now (possibly while others still run)
	VerdictCommit                          // Digest is canonical
	VerdictFail                            // the item fails: Reason says why
)

func (k VerdictKind) String() string {
	switch k {
	case VerdictWait:
		return "wait"
	case VerdictDispatch:
		return "dispatch"
	case VerdictCommit:
		return "commit"
	case VerdictFail:
		return "fail"
	}
	return "verdict(" + strconv.Itoa(int(k)) + ")"
}

// Fail reasons (stable strings: they become result statuses).
const (
	ReasonNoConsensus   = "no_consensus"       // outcomes disagree and no quorum can be reached any more
	ReasonTooManyErrors = "too_many_errors"    // more than MaxErrors executions were lost
	ReasonAttempts      = "attempts_exhausted" // attempts ran out before enough outcomes arrived (no disagreement)
)

// Verdict is Tally's decision.
type Verdict struct {
	Kind     VerdictKind
	Dispatch int    // VerdictDispatch: how many new executions to start
	Digest   string // VerdictCommit
	Reason   string // VerdictFail
	// Agree lists the indexes (into the votes slice) of the executions whose digest is canonical (VerdictCommit),
	// ascending; every other pending or done execution is to be rolled back by the caller.
	Agree []int
}

// Tally decides what to do with an item given its executions, in the order
// they were started. trusted is the caller's draw for adaptive replication:
// true when the only done execution's node passed Trusted(count, u); it is
// looked at only when exactly one execution is done. p must pass CheckPolicy.
// The rules, in order:
//
//  1. Commit. The largest group of done executions with equal digests
//     commits if it has at least Quorum members (between groups of equal
//     size, the one whose first vote came earliest, as in Groups). With
//     Adaptive and trusted, a single done execution commits alone, whatever
//     else is pending or lost. Agree lists the group.
//  2. Fail with ReasonTooManyErrors when more than MaxErrors executions were
//     lost.
//  3. Fail as soon as no quorum can be reached any more: when even if every
//     pending execution and every execution still allowed by Attempts
//     (Attempts - len(votes)) joined the largest group, it would stay below
//     Quorum. This can happen while executions are still pending: the caller
//     cancels them rather than wait for outcomes that cannot change the
//     verdict. The reason is ReasonNoConsensus when two or more distinct
//     digests were seen, else ReasonAttempts (losses, not disagreement,
//     used up the attempts).
//  4. Dispatch the fewest new executions that still let the item commit:
//     enough to bring done+pending up to the target (Replicas; 1 with
//     Adaptive until a first result is done) and enough to let the largest
//     group reach Quorum if every pending and new execution joined it
//     (Quorum - largest - pending; with Adaptive and nothing done yet, a
//     quorum of one). The larger of the two, capped by the attempts left.
//     Taking the larger rather than first filling the target means a
//     disagreement that already shows more executions are needed starts
//     them in one round instead of two.
//  5. Otherwise wait: executions are pending (rules 3 and 4 leave no other
//     case).
//
// Empty votes therefore dispatch Replicas (Adaptive: 1). Tally is a pure
// function of its arguments and does not modify votes.
func Tally(p VotePolicy, votes []Vote, trusted bool) Verdict {
	var done, pending, lost int
	for _, v := range votes {
		switch v.State {
		case ExecDone:
			done++
		case ExecPending:
			pending++
		default:
			lost++
		}
	}
	var buf [8]digestCount // an item rarely sees more distinct digests: no allocation
	counts := countDigests(votes, buf[:0])
	best := largestGroup(counts)
	largest := 0
	if best >= 0 {
		largest = counts[best].n
	}

	if best >= 0 && (largest >= p.Quorum || (p.Adaptive && trusted && done == 1)) {
		digest := counts[best].digest
		agree := make([]int, 0, largest)
		for i, v := range votes {
			if v.State == ExecDone && v.Digest == digest {
				agree = append(agree, i)
			}
		}
		return Verdict{Kind: VerdictCommit, Digest: digest, Agree: agree}
	}
	if lost > p.MaxErrors {
		return Verdict{Kind: VerdictFail, Reason: ReasonTooManyErrors}
	}

	target, quorum := p.Replicas, p.Quorum
	if p.Adaptive && done == 0 {
		target, quorum = 1, 1 // the first result may be trusted alone
	}
	room := max(p.Attempts-len(votes), 0)
	if largest+pending+room < quorum {
		if len(counts) >= 2 {
			return Verdict{Kind: VerdictFail, Reason: ReasonNoConsensus}
		}
		return Verdict{Kind: VerdictFail, Reason: ReasonAttempts}
	}
	if n := min(max(target-done-pending, quorum-largest-pending), room); n > 0 {
		return Verdict{Kind: VerdictDispatch, Dispatch: n}
	}
	return Verdict{Kind: VerdictWait}
}

// DigestGroup is the done executions that gave one digest.
type DigestGroup struct {
	Digest string
	Nodes  []string // in the order the executions were started
}

// Groups returns the distinct digests of done executions with the nodes that gave each, largest group first
// (ties: the group whose first vote came earliest), for status pages and failed results.
func Groups(votes []Vote) []DigestGroup {
	counts := countDigests(votes, nil)
	// Stable: counts are in order of first vote, which breaks the ties.
	slices.SortStableFunc(counts, func(a, b digestCount) int { return b.n - a.n })
	out := make([]DigestGroup, len(counts))
	for g, c := range counts {
		nodes := make([]string, 0, c.n)
		for _, v := range votes[c.first:] {
			if v.State == ExecDone && v.Digest == c.digest {
				nodes = append(nodes, v.Node)
			}
		}
		out[g] = DigestGroup{Digest: c.digest, Nodes: nodes}
	}
	return out
}

type digestCount struct {
	digest string
	first  int // index of its first vote
	n      int // done votes with this digest
}

// countDigests appends to buf the distinct digests of the done votes, in
// order of first vote, with their counts. A linear search per vote: an item
// has at most maxAttempts executions and few distinct digests.
func countDigests(votes []Vote, buf []digestCount) []digestCount {
next:
	for i, v := range votes {
		if v.State != ExecDone {
			continue
		}
		for g := range buf {
			if buf[g].digest == v.Digest {
				buf[g].n++
				continue next
			}
		}
		buf = append(buf, digestCount{digest: v.Digest, first: i, n: 1})
	}
	return buf
}

// largestGroup returns the index in counts of the largest group, the
// earliest among equals; -1 if there is none.
func largestGroup(counts []digestCount) int {
	best := -1
	for g, c := range counts {
		if best < 0 || c.n > counts[best].n {
			best = g
		}
	}
	return best
}
