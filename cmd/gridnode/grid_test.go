package main

// Process-level grid tests: jobs on three real `gridnode agent` processes,
// each on its own host label, started by internal/harness. They check what
// a user of the grid sees through the SDK: every item committed once with
// the right bytes, replicas on distinct hosts, a lying node outvoted and
// quarantined, emitted children entering the job once, and a job that
// survives kill -9 of an executor. They assert outcomes only; the times they
// log are the measurements.
//
// Environment:
//
//	GRIDNODE_GRID_ITEMS=N   items in TestGridManyItemsReplicasTwo (default
//	                        10,000: a few seconds here).

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridnode/gridnode/cmd/gridnode/internal/harness"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
)

// gridSlowWork is a Work input that takes some milliseconds per execution here,
// so that a job of a few hundred items is still running when a test acts.
const gridSlowWork = 250_000

// gridStart starts n agents, node i on host h<i>.
func gridStart(t *testing.T, n int, faulty map[int][]string) *harness.Cluster {
	t.Helper()
	return startCluster(t, harness.Options{N: n, Labels: harness.HostLabels, FaultyNodes: faulty})
}

// gridHosts maps node ID → host label, as node i's Members says.
func gridHosts(t *testing.T, c *harness.Cluster, i int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, x := range members(t, c, i).Members {
		out[x.NodeID] = x.Labels["host"]
		if out[x.NodeID] == "" {
			t.Fatalf("member %s has no host label: %v", x.NodeID, x.Labels)
		}
	}
	return out
}

func gridPush(t *testing.T, c *harness.Cluster, i int, wasm []byte) string {
	t.Helper()
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	r, err := c.Client(i).PushModule(ctx, wasm)
	if err != nil {
		t.Fatalf("push to n%d: %v", i, err)
	}
	return r.Hash
}

func gridSubmit(t *testing.T, c *harness.Cluster, i int, spec api.JobSpec, inputs [][]byte) string {
	t.Helper()
	ctx, cancel := withTimeout(time.Minute)
	defer cancel()
	start := time.Now()
	r, err := c.Client(i).Submit(ctx, spec, sdk.Items(inputs...))
	if err != nil {
		t.Fatalf("submit %d items to n%d: %v", len(inputs), i, err)
	}
	if r.Items != uint64(len(inputs)) {
		t.Fatalf("submit to n%d: accepted %d items, sent %d", i, r.Items, len(inputs))
	}
	t.Logf("n%d accepted job %s (%d items, replicas %d, quorum %d) in %s", i, r.JobID, r.Items,
		spec.Policy.Replicas, spec.Policy.Quorum, time.Since(start).Round(time.Millisecond))
	return r.JobID
}

// gridResults follows job's results through node i until the job is done,
// failing on an index committed twice. It also returns the final status the
// stream ended with.
func gridResults(t *testing.T, c *harness.Cluster, i int, job string, timeout time.Duration) (map[uint64]api.Result, api.JobStatus) {
	t.Helper()
	ctx, cancel := withTimeout(timeout)
	defer cancel()
	out := map[uint64]api.Result{}
	rs := c.Client(i).Results(job, sdk.ResultsOptions{Follow: true})
	defer rs.Close()
	var lastSeq uint64
	for r, err := range rs.All(ctx) {
		if err != nil {
			st, serr := c.Client(i).Status(context.Background(), job)
			t.Fatalf("reading job %s through n%d after %d results: %v\nstatus: %+v %v", job, i, len(out), err, st, serr)
		}
		if old, dup := out[r.Index]; dup {
			t.Fatalf("item %d committed twice: seq %d (%s, votes %v) and seq %d (%s, votes %v)",
				r.Index, old.Seq, old.Node, old.Votes, r.Seq, r.Node, r.Votes)
		}
		if r.Seq <= lastSeq {
			t.Fatalf("item %d: seq %d after seq %d: the log went back", r.Index, r.Seq, lastSeq)
		}
		lastSeq = r.Seq
		out[r.Index] = r
	}
	if rs.Status() == nil {
		t.Fatalf("job %s: the results stream through n%d ended after %d results without the final status", job, i, len(out))
	}
	return out, *rs.Status()
}

// gridCheckVote checks that r was decided by want agreeing executions on
// distinct hosts, the committed digest first, and that at least want
// executions started.
func gridCheckVote(r api.Result, want int, host map[string]string) error {
	if len(r.Votes) == 0 {
		return fmt.Errorf("item %d: no votes", r.Index)
	}
	v := r.Votes[0]
	if v.Digest != r.Digest {
		return fmt.Errorf("item %d: committed digest %s, first vote %s", r.Index, r.Digest, v.Digest)
	}
	seen := map[string]string{}
	for _, nd := range v.Nodes {
		h := host[nd]
		if h == "" {
			return fmt.Errorf("item %d: vote from unknown node %s: %v", r.Index, nd, r.Votes)
		}
		if other, dup := seen[h]; dup {
			return fmt.Errorf("item %d: %s and %s on one host %s agreed: %v", r.Index, other, nd, h, r.Votes)
		}
		seen[h] = nd
	}
	if len(v.Nodes) < want {
		return fmt.Errorf("item %d: %d agreeing nodes %v, want %d", r.Index, len(v.Nodes), v.Nodes, want)
	}
	if !slices.Contains(v.Nodes, r.Node) {
		return fmt.Errorf("item %d: executor %s is not among the agreeing nodes %v", r.Index, r.Node, v.Nodes)
	}
	if r.Attempts < want {
		return fmt.Errorf("item %d: %d attempts, want >= %d", r.Index, r.Attempts, want)
	}
	return nil
}

// gridMeanDuration is the mean Duration of the committed executions.
func gridMeanDuration(got map[uint64]api.Result) time.Duration {
	if len(got) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range got {
		sum += r.Duration
	}
	return (sum / time.Duration(len(got))).Round(10 * time.Microsecond)
}

// gridExecutions counts, per node, the executions the votes show.
func gridExecutions(got map[uint64]api.Result) map[string]int {
	out := map[string]int{}
	for _, r := range got {
		for _, v := range r.Votes {
			for _, nd := range v.Nodes {
				out[nd]++
			}
		}
	}
	return out
}

func gridWorkInputs(n, mod int) ([][]byte, []string) {
	in := make([][]byte, n)
	want := make([]string, n)
	outs := make([]string, mod)
	for i := range mod {
		outs[i] = testdata.WorkOutput(uint64(i))
	}
	for i := range in {
		in[i] = []byte(strconv.Itoa(i % mod))
		want[i] = outs[i%mod]
	}
	return in, want
}

// gridCheckOutputs checks that got holds exactly the items 0..len(want)-1,
// each ok with output want[i].
func gridCheckOutputs(t *testing.T, got map[uint64]api.Result, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d results, want %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		r, ok := got[uint64(i)]
		switch {
		case !ok:
			t.Errorf("item %d: no result", i)
		case r.Status != "ok" || string(r.Output) != want[i]:
			t.Errorf("item %d: %s %q (%s; votes %v), want ok %q", i, r.Status, r.Output, r.Message, r.Votes, want[i])
		default:
			continue
		}
		if bad++; bad == 10 {
			t.Fatalf("more bad items not shown")
		}
	}
	for idx := range got {
		if idx >= uint64(len(want)) {
			t.Errorf("result for item %d, beyond the job's %d items", idx, len(want))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func TestGridManyItemsReplicasTwo(t *testing.T) {
	n := envInt(t, "GRIDNODE_GRID_ITEMS", 10000)
	c := gridStart(t, 3, nil)
	host := gridHosts(t, c, 1)
	mod := gridPush(t, c, 1, testdata.Work)
	inputs, want := gridWorkInputs(n, 500)

	start := time.Now()
	job := gridSubmit(t, c, 1, api.JobSpec{Name: "work", Module: mod, Policy: api.Policy{Replicas: 2, Quorum: 2}}, inputs)
	got, st := gridResults(t, c, 2, job, 10*time.Minute)
	took := time.Since(start)
	gridCheckOutputs(t, got, want)
	for _, r := range got {
		if err := gridCheckVote(r, 2, host); err != nil {
			t.Fatal(err)
		}
	}
	if st.State != api.JobDone || st.Committed != uint64(n) || st.Failed != 0 {
		t.Errorf("final status through n2: state %s, committed %d, failed %d; want done, %d, 0", st.State, st.Committed, st.Failed, n)
	}
	per := gridExecutions(got)
	if len(per) != 3 {
		t.Errorf("executions per node %v: want all three used", per)
	}
	extra := 0
	for _, r := range got {
		extra += r.Attempts - 2
	}
	t.Logf("%d items × 2 replicas: submitted through n1, all read through n2 %s after the submit started (%.0f items/s); executions per node %v; %d executions beyond the two per item",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), per, extra)
}

// gridQuarantineWatch polls a job's status through node i and records whether
// and when its Quarantined list named node id.
type gridQuarantineWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     struct {
		sync.Mutex
		polls, errs int
		first       time.Duration // since the watch started; 0: never
		seen        []api.Quarantine
		lastErr     error
	}
}

func gridWatchQuarantine(c *harness.Cluster, i int, job, id string) *gridQuarantineWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &gridQuarantineWatch{cancel: cancel, done: make(chan struct{})}
	cl := c.Client(i)
	start := time.Now()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(harness.PollEvery)
		defer tick.Stop()
		for {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cl.Status(cctx, job)
			ccancel()
			w.mu.Lock()
			w.mu.polls++
			if err != nil {
				w.mu.errs++
				w.mu.lastErr = err
			}
			for _, q := range st.Quarantined {
				if q.Node == id && w.mu.first == 0 {
					w.mu.first = time.Since(start)
					w.mu.seen = st.Quarantined
				}
			}
			w.mu.Unlock()
			if err == nil && st.Done() {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *gridQuarantineWatch) stop() (first time.Duration, seen []api.Quarantine, polls, errs int, lastErr error) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.first, w.mu.seen, w.mu.polls, w.mu.errs, w.mu.lastErr
}

func TestGridFaultyNodeOutvoted(t *testing.T) {
	const items = 1500
	for _, tc := range []struct{ replicas, quorum int }{{3, 2}, {2, 2}} {
		t.Run(fmt.Sprintf("replicas%d-quorum%d", tc.replicas, tc.quorum), func(t *testing.T) {
			// n3 corrupts the output of every execution it runs.
			c := gridStart(t, 3, map[int][]string{3: {"GRIDNODE_FAULT_WRONG_OUTPUT=1"}})
			bad := c.Node(3).ID
			if !c.Node(3).LogContains("FAULT INJECTION ACTIVE") {
				t.Fatalf("%s runs %s but its log does not say fault injection is active:\n%s", bad, c.Node(3).Binary, c.Node(3).Tail(20))
			}
			host := gridHosts(t, c, 1)
			mod := gridPush(t, c, 1, testdata.Work)
			// Slow-ish inputs, so that the job still runs when the
			// coordinators have seen n3 disagree three times in a row.
			inputs := make([][]byte, items)
			want := make([]string, items)
			outs := map[int]string{}
			for i := range inputs {
				v := 20_000 + i%50*1000
				if outs[v] == "" {
					outs[v] = testdata.WorkOutput(uint64(v))
				}
				inputs[i], want[i] = []byte(strconv.Itoa(v)), outs[v]
			}

			start := time.Now()
			job := gridSubmit(t, c, 1, api.JobSpec{Name: "work", Module: mod, Policy: api.Policy{Replicas: tc.replicas, Quorum: tc.quorum}}, inputs)
			w := gridWatchQuarantine(c, 1, job, bad)
			got, st := gridResults(t, c, 2, job, 5*time.Minute)
			took := time.Since(start)
			first, seen, polls, errs, lastErr := w.stop()

			gridCheckOutputs(t, got, want)
			if st.State != api.JobDone || st.Committed != items {
				t.Errorf("final status: state %s, committed %d; want done, %d", st.State, st.Committed, items)
			}
			attempts := map[int]int{}
			lost := 0 // items where n3's digest lost the vote
			for _, r := range got {
				if err := gridCheckVote(r, tc.quorum, host); err != nil {
					t.Fatal(err)
				}
				if slices.Contains(r.Votes[0].Nodes, bad) {
					t.Fatalf("item %d: the faulty node's digest was canonical: %v", r.Index, r.Votes)
				}
				attempts[r.Attempts]++
				if !slices.ContainsFunc(r.Votes[1:], func(v api.Vote) bool { return slices.Contains(v.Nodes, bad) }) {
					continue
				}
				lost++
				// Two honest executions beside the wrong one.
				if r.Attempts < 3 {
					t.Errorf("item %d: %s disagreed, yet %d attempts: %v", r.Index, bad, r.Attempts, r.Votes)
				}
			}
			t.Logf("%d items in %s; attempts per item %v; %s lost the vote on %d items; executions per node %v; committed executions took %s on average",
				items, took.Round(time.Millisecond), attempts, bad, lost, gridExecutions(got), gridMeanDuration(got))
			if lost == 0 {
				t.Errorf("%s lost no vote: the test saw no disagreement", bad)
			}
			if tc.replicas == 2 && attempts[3] == 0 {
				t.Errorf("replicas 2: no item needed a third execution (attempts %v)", attempts)
			}
			t.Logf("coordinators' quarantine of %s, after the submit: %s", bad, gridQuarantineLog(c, bad, start))
			if first == 0 {
				t.Errorf("%d status polls through n1 (%d failed, last error %v) while the job ran: none listed %s as quarantined", polls, errs, lastErr, bad)
			} else {
				t.Logf("status listed %s quarantined %s after the submit (%d polls, %d failed): %+v", bad, first.Round(time.Millisecond), polls, errs, seen)
			}
		})
	}
}

// gridQuarantineLog says when each node, as a coordinator, logged that it
// quarantined node id, relative to since.
func gridQuarantineLog(c *harness.Cluster, id string, since time.Time) string {
	var out []string
	for i := 1; i <= c.N(); i++ {
		n := c.Node(i)
		b, err := os.ReadFile(n.LogFile)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", n.ID, err))
			continue
		}
		var at []string
		for line := range strings.Lines(string(b)) {
			if !strings.Contains(line, "quarantining a node") || !strings.Contains(line, "executor="+id+" ") {
				continue
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if tm, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				at = append(at, "+"+tm.Sub(since).Round(time.Millisecond).String())
			} else {
				at = append(at, ts)
			}
		}
		if len(at) == 0 {
			at = []string{"never"}
		}
		out = append(out, n.ID+" "+strings.Join(at, ", "))
	}
	return strings.Join(out, "; ")
}

func TestGridEmitEachChildOnce(t *testing.T) {
	const parents, children = 50, 5
	c := gridStart(t, 3, nil)
	host := gridHosts(t, c, 1)
	mod := gridPush(t, c, 1, testdata.Emit)
	inputs := make([][]byte, parents)
	for i := range inputs {
		inputs[i] = []byte("parent " + strconv.Itoa(children))
	}
	start := time.Now()
	job := gridSubmit(t, c, 1, api.JobSpec{Name: "emit", Module: mod, Policy: api.Policy{Replicas: 2}}, inputs)
	got, st := gridResults(t, c, 2, job, 5*time.Minute)
	total := parents * (1 + children)
	t.Logf("%d parents and their children: %d results in %s; executions per node %v; committed executions took %s on average",
		parents, len(got), time.Since(start).Round(time.Millisecond), gridExecutions(got), gridMeanDuration(got))

	if len(got) != total {
		t.Errorf("%d results, want %d parents + %d children", len(got), parents, parents*children)
	}
	if st.State != api.JobDone || st.Items != uint64(total) || st.Committed != uint64(total) {
		t.Errorf("final status: state %s, items %d, committed %d; want done, %d, %d", st.State, st.Items, st.Committed, total, total)
	}
	parentOut := fmt.Sprintf("parent %d emitted %d\n", children, children)
	childOut := map[string]int{}
	for i := range children {
		childOut[testdata.EmitChildOutput(i)] = i
	}
	perChild := make([]int, children)
	nParents := 0
	for idx, r := range got {
		if idx >= uint64(total) {
			t.Errorf("item %d: index beyond the job's %d items", idx, total)
		}
		if r.Status != "ok" {
			t.Fatalf("item %d: %s %q (%s)", idx, r.Status, r.Output, r.Message)
		}
		if err := gridCheckVote(r, 2, host); err != nil {
			t.Fatal(err)
		}
		out := string(r.Output)
		if ci, ok := childOut[out]; ok {
			if idx < parents {
				t.Errorf("item %d, a parent, printed a child's output %q", idx, out)
			}
			perChild[ci]++
			continue
		}
		if out != parentOut {
			t.Fatalf("item %d: output %q, neither a parent's nor a child's", idx, out)
		}
		if idx >= parents {
			t.Errorf("item %d, an emitted child, printed a parent's output %q", idx, out)
		}
		nParents++
	}
	if nParents != parents {
		t.Errorf("%d parent results, want %d", nParents, parents)
	}
	for i, k := range perChild {
		if k != parents {
			t.Errorf("child %d ran to %d results, want %d (one per parent)", i, k, parents)
		}
	}
}

func TestGridExecutorKilled(t *testing.T) {
	const items = 300
	const victim = 3
	c := gridStart(t, 3, nil)
	host := gridHosts(t, c, 1)
	id := c.Node(victim).ID
	mod := gridPush(t, c, 1, testdata.Work)
	in := strconv.Itoa(gridSlowWork)
	want := testdata.WorkOutput(gridSlowWork)
	inputs := make([][]byte, items)
	wants := make([]string, items)
	for i := range inputs {
		inputs[i], wants[i] = []byte(in), want
	}

	start := time.Now()
	job := gridSubmit(t, c, 1, api.JobSpec{Name: "slow", Module: mod, Policy: api.Policy{Replicas: 2, Quorum: 2}}, inputs)
	// Kill once some results have committed, through n1, the job's home.
	ctx, cancel := withTimeout(2 * time.Minute)
	defer cancel()
	var before api.JobStatus
	for {
		st, err := c.Client(1).Status(ctx, job)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if st.Done() {
			t.Fatalf("the job ended before the kill: make the items slower: %+v", st)
		}
		if st.Committed >= 20 {
			before = st
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fewer than 20 results after %s: %+v", time.Since(start).Round(time.Millisecond), st)
		case <-time.After(harness.PollEvery):
		}
	}
	killed := time.Now()
	c.Kill(victim)
	after, err := c.Client(1).Status(ctx, job)
	if err != nil {
		t.Fatalf("status after the kill: %v", err)
	}
	t.Logf("killed %s %s after the submit, with %d of %d results committed (%d right after the kill)",
		id, killed.Sub(start).Round(time.Millisecond), before.Committed, items, after.Committed)

	got, st := gridResults(t, c, 1, job, 3*time.Minute)
	t.Logf("job done %s after the kill; executions per node %v; committed executions took %s on average",
		time.Since(killed).Round(time.Millisecond), gridExecutions(got), gridMeanDuration(got))
	gridCheckOutputs(t, got, wants)
	if st.State != api.JobDone || st.Committed != items {
		t.Errorf("final status: state %s, committed %d; want done, %d", st.State, st.Committed, items)
	}
	late, without := 0, 0
	for _, r := range got {
		if err := gridCheckVote(r, 2, host); err != nil {
			t.Fatal(err)
		}
		if r.Seq > after.Committed {
			late++
		}
		if !slices.ContainsFunc(r.Votes, func(v api.Vote) bool { return slices.Contains(v.Nodes, id) }) {
			without++
		}
	}
	t.Logf("%d results committed after the kill; %d items decided without %s", late, without, id)
	if late == 0 {
		t.Errorf("no result committed after the kill: it landed after the job")
	}
	if without == 0 {
		t.Errorf("every item had an execution on %s", id)
	}

	// The same node ID comes back, and a job that needs all three hosts
	// runs on it.
	m := members(t, c, 1)
	was, _ := harness.Member(m, id)
	c.Restart(victim, false)
	sctx, scancel := withTimeout(settleWait)
	defer scancel()
	err = c.Poll(sctx, func(r harness.Round) bool {
		if !settled(r, 3, 3) {
			return false
		}
		for _, m := range r.Members {
			if x, _ := harness.Member(m, id); x.Incarnation <= was.Incarnation {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("%s restarted but the cluster did not settle: %v", id, err)
	}
	const small = 30
	smallIn, smallWant := gridWorkInputs(small, 500)
	job2 := gridSubmit(t, c, 1, api.JobSpec{Name: "small", Module: mod, Policy: api.Policy{Replicas: 3, Quorum: 3}}, smallIn)
	got2, _ := gridResults(t, c, victim, job2, time.Minute)
	gridCheckOutputs(t, got2, smallWant)
	for _, r := range got2 {
		if err := gridCheckVote(r, 3, host); err != nil {
			t.Fatal(err)
		}
	}
	per := gridExecutions(got2)
	t.Logf("after the restart, %d items × 3 replicas read through %s: executions per node %v", small, id, per)
	if ids := slices.Sorted(maps.Keys(per)); !slices.Equal(ids, []string{"n1", "n2", "n3"}) {
		t.Errorf("executions on %v, want n1, n2 and n3", strings.Join(ids, ", "))
	}
}

// TestGridCheckpointResume runs one long item that checkpoints at a fixed
// interval, kills its executor (kill -9) at a random moment of its run, and
// checks that it resumed on another node from the last checkpoint before
// the kill: the output is the fault-free run's, and the work redone is less
// than one interval (plus what the calibration misjudges). The short run
// has a 4-second item checkpointing every 0.4 s; the run:
//
//	GRIDNODE_CKPT_SECONDS=60 GRIDNODE_CKPT_ROUNDS=20 go test -count=1 -timeout 60m -run TestGridCheckpointResume -v ./cmd/gridnode/
func TestGridCheckpointResume(t *testing.T) {
	secs := envInt(t, "GRIDNODE_CKPT_SECONDS", 4)
	rounds := envInt(t, "GRIDNODE_CKPT_ROUNDS", 1)
	rng := rand.New(rand.NewPCG(uint64(testSeed(t)), 3))
	c := gridStart(t, 3, nil)
	mod := gridPush(t, c, 1, testdata.Count)
	index := map[string]int{}
	for i := 1; i <= c.N(); i++ {
		index[c.Node(i).ID] = i
	}

	// Calibrate: steps per second of count.wasm here, from a short run.
	const calSteps = 2000
	cal := gridSubmit(t, c, 1, api.JobSpec{Name: "calibrate", Module: mod}, [][]byte{fmt.Appendf(nil, "%d %d", calSteps, calSteps)})
	got, _ := gridResults(t, c, 1, cal, time.Minute)
	rate := calSteps / got[0].Duration.Seconds()
	steps := uint64(float64(secs) * rate)
	every := steps / 10
	interval := time.Duration(float64(every) / rate * float64(time.Second))
	input := fmt.Appendf(nil, "%d %d", steps, every)
	want := testdata.CountOutput(steps)
	t.Logf("count.wasm runs %.0f steps/s here: the item is %d steps (%ds), a checkpoint every %d steps (%s)", rate, steps, secs, every, interval.Round(time.Millisecond))

	for round := range rounds {
		var job string
		var exec int
		var running time.Time
		ctx, cancel := withTimeout(2 * time.Minute)
		// Find the item running. Its executor may be the job's home (n1):
		// then the home dies too, and another holder takes the job over
		// with the checkpoints it was handed.
		job = gridSubmit(t, c, 1, api.JobSpec{Name: "long", Module: mod}, [][]byte{input})
		for running.IsZero() {
			st, err := c.Client(1).Status(ctx, job)
			if err != nil || st.Done() {
				t.Fatalf("round %d: status %+v, %v: the item ended before it was seen running", round, st, err)
			}
			if len(st.Unfinished) == 1 && st.Unfinished[0].Why == api.WaitRunning && len(st.Unfinished[0].Executors) == 1 {
				running, exec = time.Now(), index[st.Unfinished[0].Executors[0]]
			}
			select {
			case <-ctx.Done():
				t.Fatalf("round %d: the item was never seen running", round)
			case <-time.After(harness.PollEvery):
			}
		}
		// Kill it between 20% and 80% of its run, as calibrated. The pace
		// may change with the machine's load: an item that already ended
		// has nothing to resume, and the round says so.
		at := time.Duration((0.2 + 0.6*rng.Float64()) * float64(secs) * float64(time.Second))
		time.Sleep(time.Until(running.Add(at)))
		if st, err := c.Client(1).Status(ctx, job); err == nil && st.Done() {
			t.Fatalf("round %d: the item ended %s after it was seen running, before the kill: this machine now runs count.wasm faster than calibrated (%.0f steps/s); rerun on a machine whose load does not change", round, time.Since(running).Round(time.Millisecond), rate)
		}
		killedAt := time.Since(running)
		c.Kill(exec)
		cancel()

		reader := 1 + exec%c.N() // a node that was not killed
		got, st := gridResults(t, c, reader, job, 3*time.Minute)
		r := got[0]
		if st.State != api.JobDone || !r.OK() || string(r.Output) != want {
			t.Fatalf("round %d: state %s, item %s %q (%s), want ok %q", round, st.State, r.Status, r.Output, r.Message, want)
		}
		var from uint64
		if _, err := fmt.Sscanf(string(r.Log), "resumed at step %d", &from); err != nil || from == 0 || !r.Resumed {
			t.Fatalf("round %d: the item did not resume from a checkpoint: resumed %v, its log is %q", round, r.Resumed, r.Log)
		}
		// The killed run had reached about killedAt×rate steps; the last
		// checkpoint before that is where it should have resumed.
		reached := uint64(killedAt.Seconds() * rate)
		last := reached / every * every
		wasted := time.Duration(float64(reached-min(reached, from)) / rate * float64(time.Second))
		t.Logf("round %d: killed n%d %s into the run (about step %d); resumed on %s at step %d; work redone ≈ %s (interval %s)",
			round, exec, killedAt.Round(time.Millisecond), reached, r.Node, from, wasted.Round(time.Millisecond), interval.Round(time.Millisecond))
		if from+every < last {
			t.Errorf("round %d: resumed at step %d, but the run had saved step %d before the kill", round, from, last)
		}
		c.Restart(exec, round%2 == 1) // odd rounds: a replacement with the old node ID on a new port
		sctx, scancel := withTimeout(settleWait)
		err := c.Poll(sctx, func(r harness.Round) bool { return settled(r, 3, 3) })
		scancel()
		if err != nil {
			t.Fatalf("round %d: n%d back: %v", round, exec, err)
		}
	}
}
