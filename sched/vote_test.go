package sched

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// votesOf reads a script of executions, one word each, in start order: an
// upper-case word is a done execution with that digest, "." a pending one,
// "x" a lost one, "?" one in a state the tally does not know. Nodes are n0,
// n1, ... by position.
func votesOf(script string) []Vote {
	var votes []Vote
	for i, w := range strings.Fields(script) {
		v := Vote{Node: fmt.Sprintf("n%d", i)}
		switch w {
		case ".":
			v.State = ExecPending
		case "x":
			v.State = ExecLost
		case "?":
			v.State = 0
		default:
			v.State, v.Digest = ExecDone, w
		}
		votes = append(votes, v)
	}
	return votes
}

// verdictString prints a verdict the way the scenarios spell it.
func verdictString(v Verdict) string {
	switch v.Kind {
	case VerdictDispatch:
		return fmt.Sprintf("dispatch %d", v.Dispatch)
	case VerdictCommit:
		return fmt.Sprintf("commit %s %v", v.Digest, v.Agree)
	case VerdictFail:
		return "fail " + v.Reason
	}
	return v.Kind.String()
}

func votePol(replicas, quorum, attempts, maxErrors int) VotePolicy {
	return VotePolicy{Replicas: replicas, Quorum: quorum, Attempts: attempts, MaxErrors: maxErrors}
}

func adaptivePol(p VotePolicy) VotePolicy { p.Adaptive = true; return p }

func TestTallyScenarios(t *testing.T) {
	r2q2 := votePol(2, 2, 3, 2)
	r3q2 := votePol(3, 2, 5, 2)
	for _, c := range []struct {
		name    string
		p       VotePolicy
		votes   string
		trusted bool
		want    string
	}{
		{"nothing started", r2q2, "", false, "dispatch 2"},
		{"nothing started, adaptive", adaptivePol(r3q2), "", false, "dispatch 1"},
		{"first outcome in", r2q2, "A .", false, "wait"},
		{"two agree", r2q2, "A A", false, "commit A [0 1]"},
		{"two disagree: a tie-breaker", r2q2, "A B", false, "dispatch 1"},
		{"tie-breaker running", r2q2, "A B .", false, "wait"},
		{"tie-breaker sides with the second", r2q2, "A B B", false, "commit B [1 2]"},
		{"tie-breaker sides with the first", r2q2, "A B A", false, "commit A [0 2]"},
		{"three outcomes, three digests, attempts spent", r2q2, "A B C", false, "fail no_consensus"},
		{"disagreement with no attempt left", votePol(2, 2, 2, 2), "A B", false, "fail no_consensus"},

		{"one wrong, quorum without the third", r3q2, "A B A .", false, "commit A [0 2]"},
		{"quorum before the third is in", r3q2, "A . A", false, "commit A [0 2]"},
		{"one wrong, third still running", r3q2, "A B .", false, "wait"},
		{"every replica traps the same way", votePol(3, 3, 3, 1), "trap trap trap", false, "commit trap [0 1 2]"},
		{"largest group wins, not the first", votePol(3, 1, 3, 1), "A B B", false, "commit B [1 2]"},
		{"equal groups: the earliest", votePol(4, 2, 4, 1), "A B B A", false, "commit A [0 3]"},
		{"quorum of one commits the first outcome", votePol(3, 1, 3, 1), ". A .", false, "commit A [1]"},

		{"a loss is replaced", votePol(2, 2, 10, 2), "x .", false, "dispatch 1"},
		{"losses replaced, replacements running", votePol(2, 2, 10, 2), "x x . .", false, "wait"},
		{"losses up to MaxErrors are tolerated", votePol(2, 2, 10, 2), "x A x A", false, "commit A [1 3]"},
		{"one loss more than MaxErrors", votePol(2, 2, 10, 2), "x x . x .", false, "fail too_many_errors"},
		{"a possible commit beats the errors", votePol(2, 2, 10, 1), "x A x A", false, "commit A [1 3]"},
		{"unknown state counts as lost", votePol(2, 2, 10, 1), "? A ?", false, "fail too_many_errors"},
		{"losses spent the attempts", votePol(2, 2, 3, 3), "A x x", false, "fail attempts_exhausted"},
		{"every execution lost", votePol(1, 1, 2, 5), "x x", false, "fail attempts_exhausted"},
		{"no quorum possible although one runs", votePol(3, 3, 3, 3), "A x .", false, "fail attempts_exhausted"},
		{"no quorum possible: fail early on disagreement", votePol(3, 3, 4, 3), "A B C", false, "fail no_consensus"},
		{"disagreement needs two more at once", votePol(3, 3, 6, 3), "A B", false, "dispatch 2"},
		{"dispatch capped by attempts", votePol(4, 2, 5, 3), "A x x", false, "dispatch 2"},

		{"adaptive: trusted result commits alone", adaptivePol(r2q2), "A", true, "commit A [0]"},
		{"adaptive: untrusted result asks for the replicas", adaptivePol(r2q2), "A", false, "dispatch 1"},
		{"adaptive: untrusted, enough to reach quorum", adaptivePol(r3q2), "A", false, "dispatch 2"},
		{"adaptive: trusted commits, pending rolled back", adaptivePol(r3q2), "A . .", true, "commit A [0]"},
		{"adaptive: trust ignored with two done", adaptivePol(r2q2), "A B", true, "dispatch 1"},
		{"adaptive: a loss before any result", adaptivePol(r2q2), "x", false, "dispatch 1"},
		{"adaptive: first one running", adaptivePol(r3q2), ".", true, "wait"},
	} {
		t.Run(c.name, func(t *testing.T) {
			votes := votesOf(c.votes)
			if got := verdictString(Tally(c.p, votes, c.trusted)); got != c.want {
				t.Errorf("Tally(%+v, %q, trusted=%v) = %s, want %s", c.p, c.votes, c.trusted, got, c.want)
			}
		})
	}
}

// naiveTally is Tally's deliberately naive twin: the same rules, written as
// nested counting loops and searches over "how many more would do" instead
// of arithmetic.
func naiveTally(p VotePolicy, votes []Vote, trusted bool) Verdict {
	done := func(i int) bool { return votes[i].State == ExecDone }
	count := func(pred func(int) bool) int {
		n := 0
		for i := range votes {
			if pred(i) {
				n++
			}
		}
		return n
	}
	nDone := count(done)
	nPending := count(func(i int) bool { return votes[i].State == ExecPending })
	nLost := len(votes) - nDone - nPending

	// The best group: the digest with the most done votes; the first digest
	// met wins a tie because only a strictly larger count replaces it.
	best, bestN, distinct := -1, 0, 0
	for i := range votes {
		if !done(i) || slices.ContainsFunc(votes[:i], func(w Vote) bool { return w.State == ExecDone && w.Digest == votes[i].Digest }) {
			continue
		}
		distinct++
		if n := count(func(j int) bool { return done(j) && votes[j].Digest == votes[i].Digest }); n > bestN {
			best, bestN = i, n
		}
	}
	if best >= 0 && (bestN >= p.Quorum || (p.Adaptive && trusted && nDone == 1)) {
		var agree []int
		for j := range votes {
			if done(j) && votes[j].Digest == votes[best].Digest {
				agree = append(agree, j)
			}
		}
		return Verdict{Kind: VerdictCommit, Digest: votes[best].Digest, Agree: agree}
	}
	if nLost > p.MaxErrors {
		return Verdict{Kind: VerdictFail, Reason: ReasonTooManyErrors}
	}
	target, quorum := p.Replicas, p.Quorum
	if p.Adaptive && nDone == 0 {
		target, quorum = 1, 1
	}
	left := 0
	for s := len(votes); s < p.Attempts; s++ {
		left++
	}
	// Could some future of the pending and the attempts left commit?
	possible := false
	for more := 0; more <= nPending+left; more++ {
		if bestN+more >= quorum {
			possible = true
		}
	}
	if !possible {
		if distinct > 1 {
			return Verdict{Kind: VerdictFail, Reason: ReasonNoConsensus}
		}
		return Verdict{Kind: VerdictFail, Reason: ReasonAttempts}
	}
	for d := 0; d <= left; d++ {
		if nDone+nPending+d >= target && bestN+nPending+d >= quorum {
			if d == 0 {
				return Verdict{Kind: VerdictWait}
			}
			return Verdict{Kind: VerdictDispatch, Dispatch: d}
		}
	}
	if left == 0 {
		return Verdict{Kind: VerdictWait}
	}
	return Verdict{Kind: VerdictDispatch, Dispatch: left}
}

func sameVerdict(a, b Verdict) bool {
	return a.Kind == b.Kind && a.Dispatch == b.Dispatch && a.Digest == b.Digest && a.Reason == b.Reason &&
		slices.Equal(a.Agree, b.Agree) && (a.Agree == nil) == (b.Agree == nil)
}

// checkVerdict asserts what must hold of any verdict, whatever the rules'
// details.
// (No t.Helper: it costs a stack walk per call, and this runs a million
// times; failures name their case instead.)
func checkVerdict(t *testing.T, p VotePolicy, votes []Vote, trusted bool, v Verdict) {
	fail := func(format string, args ...any) {
		t.Fatalf("policy %+v votes %v trusted %v: %s: %s", p, votes, trusted, verdictString(v), fmt.Sprintf(format, args...))
	}
	var nDone, nPending, nLost, largest, distinct int
	size := func(digest string) int {
		n := 0
		for _, x := range votes {
			if x.State == ExecDone && x.Digest == digest {
				n++
			}
		}
		return n
	}
	for i, x := range votes {
		switch x.State {
		case ExecDone:
			nDone++
			if !slices.ContainsFunc(votes[:i], func(w Vote) bool { return w.State == ExecDone && w.Digest == x.Digest }) {
				distinct++
				largest = max(largest, size(x.Digest))
			}
		case ExecPending:
			nPending++
		default:
			nLost++
		}
	}
	if v.Kind != VerdictCommit && largest >= p.Quorum {
		fail("a group of %d reached quorum %d but no commit", largest, p.Quorum)
	}
	if v.Kind != VerdictDispatch && v.Dispatch != 0 || v.Kind != VerdictCommit && (v.Digest != "" || v.Agree != nil) || v.Kind != VerdictFail && v.Reason != "" {
		fail("fields set that the kind does not use")
	}
	switch v.Kind {
	case VerdictDispatch:
		if v.Dispatch < 1 || len(votes)+v.Dispatch > p.Attempts {
			fail("dispatch beyond %d attempts", p.Attempts)
		}
		if nLost > p.MaxErrors {
			fail("dispatch after %d losses", nLost)
		}
	case VerdictWait:
		if nPending == 0 {
			fail("waiting for nothing")
		}
	case VerdictCommit:
		if len(v.Agree) < p.Quorum && !(p.Adaptive && trusted && nDone == 1) {
			fail("commit with %d votes, quorum %d", len(v.Agree), p.Quorum)
		}
		if len(v.Agree) != size(v.Digest) || !slices.IsSorted(v.Agree) {
			fail("Agree is not every vote for %s in order", v.Digest)
		}
		for _, i := range v.Agree {
			if votes[i].State != ExecDone || votes[i].Digest != v.Digest {
				fail("Agree holds %d: %+v", i, votes[i])
			}
		}
	case VerdictFail:
		switch v.Reason {
		case ReasonTooManyErrors:
			if nLost <= p.MaxErrors {
				fail("only %d lost", nLost)
			}
		case ReasonNoConsensus:
			if distinct < 2 {
				fail("no disagreement")
			}
		case ReasonAttempts:
			if distinct >= 2 {
				fail("disagreement reported as attempts")
			}
		default:
			fail("unknown reason")
		}
	default:
		fail("unknown kind")
	}
}

// tallyPolicies are the policies of the exhaustive test: the corners of
// every knob that six executions can reach.
var tallyPolicies = []VotePolicy{
	votePol(1, 1, 1, 1), votePol(1, 1, 3, 1), votePol(1, 1, 6, 5),
	votePol(2, 1, 3, 1), votePol(2, 2, 2, 1), votePol(2, 2, 3, 1), votePol(2, 2, 4, 2), votePol(2, 2, 6, 6),
	votePol(3, 2, 3, 1), votePol(3, 2, 5, 2), votePol(3, 3, 4, 2), votePol(3, 3, 6, 3), votePol(3, 1, 4, 1),
	votePol(4, 3, 6, 2), votePol(5, 3, 5, 1), votePol(6, 4, 6, 2), votePol(6, 6, 6, 1),
	adaptivePol(votePol(1, 1, 2, 1)), adaptivePol(votePol(2, 2, 3, 1)), adaptivePol(votePol(2, 2, 5, 3)),
	adaptivePol(votePol(3, 2, 4, 2)), adaptivePol(votePol(3, 3, 6, 2)), adaptivePol(votePol(4, 2, 6, 1)),
}

// TestTallyExhaustive compares Tally with its naive twin on every list of up
// to six executions over three digests and three states (pending and lost
// executions carry a digest too, which must be ignored), for each policy and
// both draws of trusted.
func TestTallyExhaustive(t *testing.T) {
	kinds := []Vote{
		{State: ExecDone, Digest: "a"}, {State: ExecDone, Digest: "b"}, {State: ExecDone, Digest: "c"},
		{State: ExecPending, Digest: "a"}, {State: ExecLost, Digest: "b"},
	}
	var lists [][]Vote
	var gen func(prefix []Vote)
	gen = func(prefix []Vote) {
		lists = append(lists, prefix)
		if len(prefix) == 6 {
			return
		}
		for _, k := range kinds {
			k.Node = fmt.Sprintf("n%d", len(prefix))
			gen(append(slices.Clip(prefix), k))
		}
	}
	gen(nil)
	seen := map[VerdictKind]int{}
	for _, p := range tallyPolicies {
		if err := CheckPolicy(p); err != nil {
			t.Fatal(err)
		}
		for _, votes := range lists {
			for _, trusted := range []bool{false, true} {
				got := Tally(p, votes, trusted)
				if want := naiveTally(p, votes, trusted); !sameVerdict(got, want) {
					t.Fatalf("policy %+v votes %v trusted %v: got %s, twin %s", p, votes, trusted, verdictString(got), verdictString(want))
				}
				checkVerdict(t, p, votes, trusted, got)
				seen[got.Kind]++
			}
		}
	}
	for k := VerdictWait; k <= VerdictFail; k++ {
		if seen[k] == 0 {
			t.Errorf("no case gave %s", k)
		}
	}
}

// randomPolicy draws a valid policy anywhere in CheckPolicy's limits, mostly
// small ones.
func randomPolicy(rng *rand.Rand) VotePolicy {
	r := 1 + rng.IntN(4)
	if rng.IntN(4) == 0 {
		r = 1 + rng.IntN(maxReplicas)
	}
	a := r + rng.IntN(5)
	if rng.IntN(8) == 0 {
		a = r + rng.IntN(maxAttempts-r+1)
	}
	return VotePolicy{Replicas: r, Quorum: 1 + rng.IntN(r), Attempts: a,
		MaxErrors: 1 + rng.IntN(min(a+1, maxMaxErrors)), Adaptive: rng.IntN(3) == 0}
}

// TestTallyRandom compares Tally with its twin on longer vote lists and
// larger policies than the exhaustive test reaches, and checks that Tally
// leaves its input alone and answers the same twice.
func TestTallyRandom(t *testing.T) {
	rng := decideRand(t)
	for range 20000 {
		p := randomPolicy(rng)
		votes := make([]Vote, rng.IntN(p.Attempts+1))
		for i := range votes {
			votes[i] = Vote{Node: fmt.Sprint("n", rng.IntN(8)), State: ExecState(rng.IntN(5)), Digest: string(rune('a' + rng.IntN(4)))}
			if rng.IntN(3) > 0 {
				votes[i].State = ExecState(1 + rng.IntN(3))
			}
		}
		trusted := rng.IntN(2) == 0
		before := slices.Clone(votes)
		got := Tally(p, votes, trusted)
		if !slices.Equal(votes, before) {
			t.Fatalf("Tally modified its votes: %v -> %v", before, votes)
		}
		if again := Tally(p, votes, trusted); !sameVerdict(got, again) {
			t.Fatalf("policy %+v votes %v: %s then %s", p, votes, verdictString(got), verdictString(again))
		}
		if want := naiveTally(p, votes, trusted); !sameVerdict(got, want) {
			t.Fatalf("policy %+v votes %v trusted %v: got %s, twin %s", p, votes, trusted, verdictString(got), verdictString(want))
		}
		checkVerdict(t, p, votes, trusted, got)
	}
}

// TestTallyDrivesItemsToAnEnd plays the coordinator: it follows every
// verdict, finishing pending executions in random order with random
// outcomes, and checks that each item ends in a commit or a failure within
// its attempts, and that an honest item costs exactly its replicas.
func TestTallyDrivesItemsToAnEnd(t *testing.T) {
	rng := decideRand(t)
	for range 3000 {
		p := randomPolicy(rng)
		pLost := []float64{0, 0.1, 0.5}[rng.IntN(3)]
		digests := 1 + rng.IntN(3) // 1: every honest execution agrees
		trust := rng.IntN(3)       // the draw of trusted: 0 never, 1 always, 2 at random
		var votes []Vote
		var v Verdict
		for step := 0; ; step++ {
			if step > 4*maxAttempts {
				t.Fatalf("policy %+v: no end after %d steps: %v", p, step, votes)
			}
			done := 0
			for _, x := range votes {
				if x.State == ExecDone {
					done++
				}
			}
			trusted := done == 1 && (trust == 1 || trust == 2 && rng.IntN(2) == 0)
			v = Tally(p, votes, trusted)
			checkVerdict(t, p, votes, trusted, v)
			if v.Kind == VerdictCommit || v.Kind == VerdictFail {
				break
			}
			if v.Kind == VerdictDispatch {
				for range v.Dispatch {
					votes = append(votes, Vote{Node: fmt.Sprint("n", len(votes)), State: ExecPending})
				}
				continue
			}
			var pending []int
			for i, x := range votes {
				if x.State == ExecPending {
					pending = append(pending, i)
				}
			}
			i := pending[rng.IntN(len(pending))]
			if rng.Float64() < pLost {
				votes[i].State = ExecLost
			} else {
				votes[i].State, votes[i].Digest = ExecDone, string(rune('a'+rng.IntN(digests)))
			}
		}
		if len(votes) > p.Attempts {
			t.Fatalf("policy %+v: %d executions started: %v", p, len(votes), votes)
		}
		if pLost == 0 && digests == 1 {
			want := p.Replicas
			if p.Adaptive && (p.Quorum == 1 || trust == 1 || trust == 2 && len(votes) == 1) {
				want = 1
			}
			if v.Kind != VerdictCommit || len(votes) != want {
				t.Fatalf("policy %+v, honest executors: %s after %d executions, want a commit after %d", p, verdictString(v), len(votes), want)
			}
		}
	}
}

func TestGroups(t *testing.T) {
	for _, c := range []struct {
		votes string
		want  []DigestGroup
	}{
		{"", []DigestGroup{}},
		{". x ?", []DigestGroup{}},
		{"A", []DigestGroup{{"A", []string{"n0"}}}},
		{"A B B", []DigestGroup{{"B", []string{"n1", "n2"}}, {"A", []string{"n0"}}}},
		{"B A A B . C", []DigestGroup{{"B", []string{"n0", "n3"}}, {"A", []string{"n1", "n2"}}, {"C", []string{"n5"}}}},
		{"x C . A B C", []DigestGroup{{"C", []string{"n1", "n5"}}, {"A", []string{"n3"}}, {"B", []string{"n4"}}}},
	} {
		votes := votesOf(c.votes)
		votes = append(votes, Vote{Node: "p", State: ExecPending, Digest: "A"}) // a pending digest does not count
		if got := Groups(votes); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Groups(%q) = %v, want %v", c.votes, got, c.want)
		}
	}
}

func TestCheckPolicy(t *testing.T) {
	for _, c := range []struct {
		p    VotePolicy
		want string
	}{
		{votePol(1, 1, 1, 1), ""},
		{votePol(16, 16, 100, 100), ""},
		{adaptivePol(votePol(3, 2, 3, 1)), ""},
		{votePol(0, 1, 1, 1), "replicas 0 is out of range: replicas must be 1..16"},
		{votePol(17, 1, 17, 1), "replicas 17 is out of range: replicas must be 1..16"},
		{votePol(2, 3, 4, 1), "quorum 3 is more than replicas 2: quorum must be 1..replicas"},
		{votePol(2, 0, 4, 1), "quorum 0 is less than 1: quorum must be 1..replicas"},
		{votePol(3, 2, 2, 1), "attempts 2 is less than replicas 3: attempts must be replicas..100"},
		{votePol(3, 2, 101, 1), "attempts 101 is more than 100: attempts must be replicas..100"},
		{votePol(3, 2, 3, 0), "max errors 0 is out of range: max errors must be 1..100"},
		{votePol(3, 2, 3, 101), "max errors 101 is out of range: max errors must be 1..100"},
	} {
		err := CheckPolicy(c.p)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckPolicy(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
	// Every combination around the limits: an error exactly outside them.
	for r := -1; r <= 18; r++ {
		for q := -1; q <= 18; q++ {
			for _, a := range []int{-1, 0, 1, 2, 15, 16, 17, 99, 100, 101} {
				for _, e := range []int{-1, 0, 1, 100, 101} {
					ok := 1 <= r && r <= 16 && 1 <= q && q <= r && r <= a && a <= 100 && 1 <= e && e <= 100
					if err := CheckPolicy(votePol(r, q, a, e)); (err == nil) != ok {
						t.Fatalf("CheckPolicy(%+v) = %v, want ok=%v", votePol(r, q, a, e), err, ok)
					}
				}
			}
		}
	}
}
