package sched

import (
	"cmp"
	"slices"
	"time"
)

// Reputation thresholds.
const (
	// QuarantineAfter disagreements in a row quarantine a node for a module:
	// one wrong result may be bad luck (a flipped bit, a bad disk sector),
	// three in a row is a broken node or a cheat.
	QuarantineAfter = 3
	QuarantineFor   = 10 * time.Minute // then probation: count 0, one more disagreement quarantines again
	TrustAfter      = 10               // BOINC adaptive replication threshold
)

// Reputation counts, per (node, module), consecutive results that agreed with the canonical one, and
// quarantines a node for a module after QuarantineAfter disagreements in a row. Not safe for concurrent use:
// its owner (the coordinator) guards it.
//
// Per module because a node can be right on one module and wrong on another
// (a CPU bug that only some code reaches, a module whose nondeterminism
// depends on the host). Only pairs that have had a result are kept: a pair
// at count 0 with no disagreement is the default and has no entry, and
// queries never create one. The zero Reputation is ready to use.
type Reputation struct {
	pairs map[repKey]repEntry
}

type repKey struct{ node, module string }

type repEntry struct {
	agreed    int       // consecutive results that agreed with the canonical one
	disagreed int       // consecutive disagreements; stays >= QuarantineAfter through quarantine and probation
	until     time.Time // end of the last quarantine; zero if never quarantined
}

// Quarantine is one (node, module) pair in quarantine.
type Quarantine struct {
	Node, Module  string
	Until         time.Time
	Disagreements int // in a row, up to now
}

// NewReputation returns an empty Reputation.
func NewReputation() *Reputation {
	return &Reputation{pairs: make(map[repKey]repEntry)}
}

func (r *Reputation) put(k repKey, e repEntry) {
	if r.pairs == nil {
		r.pairs = make(map[repKey]repEntry)
	}
	r.pairs[k] = e
}

// Agreed records a result of node for module that agreed with the canonical
// one: count++, disagreements in a row = 0. It ends a probation; it does not
// lift a quarantine in force (a late result from before the quarantine is
// no proof the node is fixed).
func (r *Reputation) Agreed(node, module string) {
	k := repKey{node, module}
	e := r.pairs[k]
	e.agreed++
	e.disagreed = 0
	r.put(k, e)
}

// Disagreed records a result of node for module that disagreed with the
// canonical one: count = 0, disagreements in a row++. At QuarantineAfter in
// a row the pair is quarantined until now+QuarantineFor, and it reports
// true. Disagreements keep counting through the quarantine and the probation
// after it, so the first disagreement after a quarantine ended quarantines
// again. A disagreement while quarantined neither extends the quarantine nor
// reports true: it comes from work placed before the quarantine, not new
// evidence.
func (r *Reputation) Disagreed(node, module string, now time.Time) (quarantined bool) {
	k := repKey{node, module}
	e := r.pairs[k]
	e.agreed = 0
	e.disagreed++
	if e.disagreed >= QuarantineAfter && !now.Before(e.until) {
		e.until = now.Add(QuarantineFor)
		quarantined = true
	}
	r.put(k, e)
	return quarantined
}

// Quarantined reports whether node is quarantined for module at now.
func (r *Reputation) Quarantined(node, module string, now time.Time) bool {
	e, ok := r.pairs[repKey{node, module}]
	return ok && now.Before(e.until)
}

// Count returns the consecutive results of node for module that agreed with
// the canonical one.
func (r *Reputation) Count(node, module string) int {
	return r.pairs[repKey{node, module}].agreed
}

// Trusted is BOINC's adaptive-replication rule: a node whose count reached TrustAfter has its single result accepted
// with probability 1 - 1/count; u is a uniform draw in [0,1).
func Trusted(count int, u float64) bool {
	return count >= TrustAfter && u < 1-1/float64(count)
}

// Quarantines lists the (node, module) pairs quarantined at now, sorted by
// node then module, for status pages.
func (r *Reputation) Quarantines(now time.Time) []Quarantine {
	var out []Quarantine
	for k, e := range r.pairs {
		if now.Before(e.until) {
			out = append(out, Quarantine{Node: k.node, Module: k.module, Until: e.until, Disagreements: e.disagreed})
		}
	}
	slices.SortFunc(out, func(a, b Quarantine) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Module, b.Module))
	})
	return out
}
