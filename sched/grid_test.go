package sched

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
)

// testGrid is a few nodes on an in-memory network, each on its own host
// label, with a client on the first.
type testGrid struct {
	t     *testing.T
	net   *transport.MemNetwork
	nodes []*Node
	c     *sdk.Client
}

func newTestGrid(t *testing.T, n int) *testGrid {
	t.Helper()
	g := &testGrid{t: t, net: transport.NewMemNetwork(1)}
	var w io.Writer = io.Discard
	if os.Getenv("GRIDNODE_TEST_DEBUG") != "" {
		w = os.Stderr
	}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		cfg := Config{
			DataDir: t.TempDir(), ListenAddr: id + ":1", NodeID: id, Isolation: plugins.InProcess, Slots: 2,
			Labels:  map[string]string{"host": "h" + strconv.Itoa(i+1)},
			Network: g.net.Host(id, transport.Peer{Role: transport.RoleNode, ID: id}),
			Logger:  slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name()),
		}
		if i > 0 {
			cfg.Join = []string{"n1:1"}
		}
		nd, err := StartNode(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		g.nodes = append(g.nodes, nd)
	}
	t.Cleanup(g.close)
	// Wait until every node sees every other alive, and the monitors are
	// settled: a kill before then could take the majority with it.
	monitors := 1
	if n >= 3 {
		monitors = 3
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, nd := range g.nodes {
		for len(nd.view().Live()) < n || len(nd.view().Monitors()) < monitors {
			if time.Now().After(deadline) {
				t.Fatalf("node %s sees %d live members, want %d", nd.id.NodeID, len(nd.view().Live()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c, err := sdk.Dial(context.Background(), sdk.Config{Addr: "n1:1",
		Network: g.net.Host("client", transport.Peer{Role: transport.RoleClient, ID: "test"})})
	if err != nil {
		t.Fatal(err)
	}
	g.c = c
	return g
}

func (g *testGrid) close() {
	if g.c != nil {
		g.c.Close()
	}
	for _, nd := range g.nodes {
		nd.Close()
	}
}

func (g *testGrid) push(wasm []byte) string {
	g.t.Helper()
	r, err := g.c.PushModule(context.Background(), wasm)
	if err != nil {
		g.t.Fatal(err)
	}
	return r.Hash
}

// results follows a job's results to the end, failing on an item returned
// twice.
func (g *testGrid) results(c *sdk.Client, job string) map[uint64]api.Result {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[uint64]api.Result{}
	rs := c.Results(job, sdk.ResultsOptions{Follow: true})
	defer rs.Close()
	for r, err := range rs.All(ctx) {
		if err != nil {
			g.dump()
			g.t.Fatal(err)
		}
		if _, dup := out[r.Index]; dup {
			g.t.Fatalf("item %d committed twice", r.Index)
		}
		out[r.Index] = r
	}
	return out
}

// dump logs where every coordinator's items stand, for a test that failed.
func (g *testGrid) dump() {
	for _, nd := range g.nodes {
		if nd.ctx.Err() != nil {
			continue
		}
		nd.exec.mu.Lock()
		var ids []string
		stages := map[execStage]int{}
		for id, x := range nd.exec.mu.execs {
			stages[x.stage]++
			if len(ids) < 6 {
				ids = append(ids, fmt.Sprintf("%s:%d", id[len(id)-6:], x.stage))
			}
		}
		g.t.Logf("%s executor: %d queued, %d running, %d staged, queue %d, running %d: %v", nd.id.NodeID, stages[stageQueued], stages[stageRunning], stages[stageStaged], len(nd.exec.mu.queue), nd.exec.mu.running, ids)
		nd.exec.mu.Unlock()
		c := nd.coord
		c.mu.Lock()
		for _, j := range c.mu.jobs {
			shown := 0
			for _, it := range j.items {
				if shown++; shown > 5 {
					break
				}
				var xs []string
				for _, x := range it.execs {
					xs = append(xs, fmt.Sprintf("%s@%s/%d:%v(%s)", x.id[len(x.id)-2:], x.node, x.inc, x.state, x.message))
				}
				g.t.Logf("  item id %s", it.id[len(it.id)-4:])
				g.t.Logf("%s coordinates item %d of %s: phase %d stalled %v noNode %v execs %v", nd.id.NodeID, it.idx, j.hdr.ID, it.phase, it.stalled, it.noNode, xs)
			}
			g.t.Logf("%s coordinates %d items of %s; %d stalled; view %d", nd.id.NodeID, len(j.items), j.hdr.ID, len(c.mu.stalled), c.mu.view.Epoch)
		}
		c.mu.Unlock()
	}
}

// faulty makes a node's executions return wrong outputs: honest-looking
// outcomes with other bytes, so that only the vote can tell.
type faulty struct {
	run  runner
	mu   sync.Mutex
	runs int
}

func (f *faulty) Execute(ctx context.Context, t plugins.Task) plugins.Outcome {
	o := f.run.Execute(ctx, t)
	if o.Status == plugins.StatusOK {
		o.Stdout = append(bytes.Clone(o.Stdout), "wrong"...)
		o.Digest = plugins.HashOf(append([]byte("faulty:"), o.Stdout...))
	}
	f.mu.Lock()
	f.runs++
	f.mu.Unlock()
	return o
}

func workItems(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(strconv.Itoa(i % 200))
	}
	return out
}

func checkWork(t *testing.T, got map[uint64]api.Result, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	for i := range uint64(n) {
		r := got[i]
		if want := testdata.WorkOutput(i % 200); r.Status != "ok" || string(r.Output) != want {
			t.Fatalf("item %d: %s %q (%s), want %q", i, r.Status, r.Output, r.Message, want)
		}
	}
}

func TestGridReplicasRunOnDistinctHostsAndCommitOnce(t *testing.T) {
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Work)
	const n = 600
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: 2, Quorum: 2}}, sdk.Items(workItems(n)...))
	if err != nil {
		t.Fatal(err)
	}
	got := g.results(g.c, reply.JobID)
	checkWork(t, got, n)
	ran := map[string]int{}
	for i, r := range got {
		if len(r.Votes) != 1 || len(r.Votes[0].Nodes) != 2 || r.Votes[0].Nodes[0] == r.Votes[0].Nodes[1] || r.Votes[0].Digest != r.Digest {
			t.Fatalf("item %d: votes %+v, want one digest from two nodes", i, r.Votes)
		}
		for _, nd := range r.Votes[0].Nodes {
			ran[nd]++
		}
	}
	if len(ran) != 3 {
		t.Fatalf("executions per node %v: want all three nodes used", ran)
	}
	// Results read through another node are the same log.
	c2, err := sdk.Dial(context.Background(), sdk.Config{Addr: "n3:1",
		Network: g.net.Host("client2", transport.Peer{Role: transport.RoleClient, ID: "test2"})})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	checkWork(t, g.results(c2, reply.JobID), n)
	st, err := c2.Status(context.Background(), reply.JobID)
	if err != nil || st.State != api.JobDone || st.Committed != n {
		t.Fatalf("status through n3: %+v %v", st, err)
	}
	t.Logf("executions per node: %v", ran)
}

func TestGridFaultyNodeIsOutvotedAndQuarantined(t *testing.T) {
	for _, tc := range []struct {
		replicas, quorum int
	}{{3, 2}, {2, 2}} {
		t.Run(fmt.Sprintf("replicas%d-quorum%d", tc.replicas, tc.quorum), func(t *testing.T) {
			g := newTestGrid(t, 3)
			bad := &faulty{run: g.nodes[2].exec.run}
			g.nodes[2].exec.run = bad
			mod := g.push(testdata.Work)
			const n = 300
			reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: tc.replicas, Quorum: tc.quorum}}, sdk.Items(workItems(n)...))
			if err != nil {
				t.Fatal(err)
			}
			got := g.results(g.c, reply.JobID)
			checkWork(t, got, n)
			extra := 0
			for _, r := range got {
				if r.Attempts > tc.replicas {
					extra++
				}
				for _, nd := range r.Votes[0].Nodes {
					if nd == "n3" {
						t.Fatalf("item %d: the faulty node's digest was canonical: %+v", r.Index, r.Votes)
					}
				}
			}
			quarantined := 0
			for _, nd := range g.nodes {
				nd.coord.mu.Lock()
				if nd.coord.mu.rep.Quarantined("n3", mod, time.Now()) {
					quarantined++
				}
				nd.coord.mu.Unlock()
			}
			bad.mu.Lock()
			runs := bad.runs
			bad.mu.Unlock()
			if quarantined == 0 {
				t.Fatalf("no coordinator quarantined the faulty node (it ran %d executions)", runs)
			}
			if tc.replicas == 2 && extra == 0 {
				t.Fatal("with replicas 2 no item needed a third execution")
			}
			t.Logf("faulty node ran %d executions; %d of %d items needed more than %d; %d coordinators quarantined it", runs, extra, n, tc.replicas, quarantined)
		})
	}
}

func TestGridExecutorDeathMovesItsItems(t *testing.T) {
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Work)
	const n = 400
	// Slow items, so that the kill lands mid-job.
	items := make([][]byte, n)
	for i := range items {
		items[i] = []byte("200000")
	}
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: 2, Quorum: 2}}, sdk.Items(items...))
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := g.c.Status(context.Background(), reply.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Committed > 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.nodes[2].Close() // a crash, as far as the others can tell
	got := g.results(g.c, reply.JobID)
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	want := testdata.WorkOutput(200000)
	after := 0
	for _, r := range got {
		if r.Status != "ok" || string(r.Output) != want {
			t.Fatalf("item %d: %s %q %s", r.Index, r.Status, r.Output, r.Message)
		}
		if strings.Contains(fmt.Sprint(r.Votes), "n3") {
			continue
		}
		after++
	}
	if after == 0 {
		t.Fatal("every item ran on the killed node: the kill landed after the job")
	}
}

// TestGridHomeDeathLosesNothing loses the home of a running job, the node
// the client talks to, to a crash or a leave: the client goes on through
// another node, another holder takes the job over, and every item is read
// exactly once with the right bytes.
func TestGridHomeDeathLosesNothing(t *testing.T) {
	for _, how := range []string{"crash", "leave"} {
		t.Run(how, func(t *testing.T) { testHomeLoss(t, how) })
	}
}

func testHomeLoss(t *testing.T, how string) {
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Work)
	const n = 300
	items := make([][]byte, n)
	for i := range items {
		items[i] = []byte("200000")
	}
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod}, sdk.Items(items...))
	if err != nil {
		t.Fatal(err)
	}
	if home := homeOf(reply.JobID); home != "n1" {
		t.Fatalf("job %s names %s, want n1", reply.JobID, home)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs := g.c.Results(reply.JobID, sdk.ResultsOptions{Follow: true})
	defer rs.Close()
	got := map[uint64]api.Result{}
	for r, err := range rs.All(ctx) {
		if err != nil {
			g.dump()
			t.Fatalf("after %d results: %v", len(got), err)
		}
		if _, dup := got[r.Index]; dup {
			t.Fatalf("item %d read twice", r.Index)
		}
		got[r.Index] = r
		if len(got) == 20 {
			// The home, and the client's node.
			if how == "leave" {
				lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
				if err := g.nodes[0].Leave(lctx); err != nil {
					t.Fatalf("leave: %v", err)
				}
				lcancel()
			}
			g.nodes[0].Close() // after a leave, or a crash to the others
		}
	}
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	if st := rs.Status(); st == nil || st.State != api.JobDone || st.Committed != n {
		t.Fatalf("final status %+v, want done with %d committed", st, n)
	}
	want := testdata.WorkOutput(200000)
	for _, r := range got {
		if r.Status != "ok" || string(r.Output) != want {
			t.Fatalf("item %d: %s %q %s", r.Index, r.Status, r.Output, r.Message)
		}
	}
	if g.c.Addr() == "n1:1" {
		t.Fatal("the client still names n1, which is gone")
	}
	var took uint64
	for _, nd := range g.nodes[1:] {
		took += nd.metrics.nTakeovers.Load()
	}
	if took == 0 {
		t.Fatal("no node took the job over")
	}
}

// TestGridIdempotentSubmitAfterHomeDeath submits with an idempotency key,
// loses the node that accepted the job, and submits again through another
// node: the retry gets the original job, not a second one.
func TestGridIdempotentSubmitAfterHomeDeath(t *testing.T) {
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Work)
	spec := api.JobSpec{Module: mod, IdempotencyKey: "nightly-2026-12-07"}
	first, err := g.c.Submit(context.Background(), spec, sdk.Items([]byte("1000"), []byte("2000")))
	if err != nil {
		t.Fatal(err)
	}
	g.nodes[0].Close()
	c3, err := sdk.Dial(context.Background(), sdk.Config{Addr: "n3:1", Only: true,
		Network: g.net.Host("client3", transport.Peer{Role: transport.RoleClient, ID: "test"})})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	// The module is on n3 already (its executors fetched it, or it is
	// pushed here): a retry sends it too, as a client would.
	if _, err := c3.PushModule(context.Background(), testdata.Work); err != nil {
		t.Fatal(err)
	}
	var again api.SubmitReply
	deadline := time.Now().Add(30 * time.Second)
	for {
		again, err = c3.Submit(context.Background(), spec, sdk.Items([]byte("1000"), []byte("2000")))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the others notice the death and take over
	}
	if err != nil {
		t.Fatal(err)
	}
	if again.JobID != first.JobID || !again.Existed {
		t.Fatalf("the retry got job %s (existed %v), want the original %s", again.JobID, again.Existed, first.JobID)
	}
}

func TestGridEmittedChildrenEnterTheJobOnce(t *testing.T) {
	if raceEnabled {
		// The emitting module is a Go program: under the race detector
		// each of its executions takes seconds. The real-process test in
		// cmd/gridnode covers the same path.
		t.Skip("too slow under the race detector")
	}
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Emit)
	const parents, children = 20, 5
	items := make([][]byte, parents)
	for i := range items {
		items[i] = []byte(fmt.Sprintf("parent %d", children))
	}
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: 2}}, sdk.Items(items...))
	if err != nil {
		t.Fatal(err)
	}
	got := g.results(g.c, reply.JobID)
	if len(got) != parents*(1+children) {
		t.Fatalf("%d results, want %d parents and %d children", len(got), parents, parents*children)
	}
	count := map[string]int{}
	for _, r := range got {
		if r.Status != "ok" {
			t.Fatalf("item %d: %s %s", r.Index, r.Status, r.Message)
		}
		if r.Index < parents && (len(r.Votes) != 1 || len(r.Votes[0].Nodes) != 2) {
			t.Fatalf("parent %d: votes %+v, want two agreeing executions", r.Index, r.Votes)
		}
		count[string(r.Output)]++
	}
	if n := count[fmt.Sprintf("parent %d emitted %d\n", children, children)]; n != parents {
		t.Fatalf("%d parent results, want %d", n, parents)
	}
	for i := range children {
		if n := count[testdata.EmitChildOutput(i)]; n != parents {
			t.Fatalf("child %d: %d results, want %d (one per parent, though every parent ran twice)", i, n, parents)
		}
	}
}

func TestGridStatusSaysWhyItemsWait(t *testing.T) {
	g := newTestGrid(t, 2)
	mod := g.push(testdata.Work)
	// Three distinct hosts needed, two exist: no item can be placed whole.
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: 3, Quorum: 3}}, sdk.Items(workItems(4)...))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := g.c.Status(context.Background(), reply.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting[api.WaitNoNode] == 4 && len(st.Unfinished) == 4 && st.Unfinished[0].Why == api.WaitNoNode {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: want all 4 items waiting with %q", st, api.WaitNoNode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := g.c.Cancel(context.Background(), reply.JobID); err != nil {
		t.Fatal(err)
	}
}

func TestGridRefusesPoliciesThatCannotWork(t *testing.T) {
	g := newTestGrid(t, 1)
	mod := g.push(testdata.Work)
	for _, tc := range []struct {
		p    api.Policy
		want string
	}{
		{api.Policy{Replicas: 2, Quorum: 3}, "quorum 3 is more than replicas 2"},
		{api.Policy{Replicas: 17}, "replicas"},
		{api.Policy{Replicas: 3, Attempts: 2}, "attempts"},
		{api.Policy{Replicas: -1}, "negative"},
		{api.Policy{Adaptive: true}, "adaptive replication needs replicas of 2 or more"},
	} {
		_, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: tc.p}, sdk.Items([]byte("1")))
		if transport.CodeOf(err) != transport.CodeBadRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("policy %+v: %v, want bad_request naming %q", tc.p, err, tc.want)
		}
	}
}

func TestGridAdaptiveReplicationTrustsAgreeingNodes(t *testing.T) {
	g := newTestGrid(t, 3)
	mod := g.push(testdata.Work)
	const n = 600
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod, Policy: api.Policy{Replicas: 2, Adaptive: true}}, sdk.Items(workItems(n)...))
	if err != nil {
		t.Fatal(err)
	}
	got := g.results(g.c, reply.JobID)
	checkWork(t, got, n)
	single, checked := 0, 0
	for _, r := range got {
		switch len(r.Votes[0].Nodes) {
		case 1:
			single++
		case 2:
			checked++
		default:
			t.Fatalf("item %d: votes %+v", r.Index, r.Votes)
		}
	}
	// Every node starts untrusted: its first ten results per coordinator
	// are checked; after that most are accepted alone.
	if single == 0 || checked < 10 {
		t.Fatalf("%d items accepted from one execution, %d checked by a second: want both", single, checked)
	}
	t.Logf("%d of %d items accepted from one execution, %d checked", single, n, checked)
}

// TestGridLostHoldersAreReplaced loses two of a running job's holders for
// good, one after the other, on five nodes: each time the home copies the
// job to one more member, so that a majority of its holders stays alive,
// and the job ends with every item once.
func TestGridLostHoldersAreReplaced(t *testing.T) {
	g := newTestGrid(t, 5)
	home := g.nodes[0]
	home.ledger.mu.Lock()
	home.ledger.grace = 0 // a dead holder is gone at once
	home.ledger.mu.Unlock()
	mod := g.push(testdata.Work)
	const n = 300
	items := make([][]byte, n)
	for i := range items {
		items[i] = []byte("200000")
	}
	reply, err := g.c.Submit(context.Background(), api.JobSpec{Module: mod}, sdk.Items(items...))
	if err != nil {
		t.Fatal(err)
	}
	holders := home.ledger.holders(reply.JobID)
	if len(holders) != 3 || holders[0] != "n1" {
		t.Fatalf("holders %v, want n1 and two others", holders)
	}
	byID := map[string]*Node{}
	for _, nd := range g.nodes {
		byID[nd.id.NodeID] = nd
	}
	// waitHolders waits until the home's list has want holders, the home
	// knows a majority acknowledged the change, and every live holder's
	// copy says so. (A second loss before that would leave too few of the
	// list, and the job would wait for one of them to come back.)
	waitHolders := func(want int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			list := home.ledger.holders(reply.JobID)
			settled := len(list) >= want && home.ledger.settled(reply.JobID, len(list))
			for _, h := range list {
				if nd := byID[h]; settled && nd.ctx.Err() == nil {
					rec, err := nd.store.Job(reply.JobID)
					settled = err == nil && len(rec.Holders) >= want
				}
			}
			if settled {
				return
			}
			if time.Now().After(deadline) {
				g.dump()
				t.Fatalf("holders %v after a minute, want %d of them, known to every live one", list, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	byID[holders[1]].Close()
	waitHolders(4)
	byID[holders[2]].Close()
	waitHolders(5)
	got := g.results(g.c, reply.JobID)
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	want := testdata.WorkOutput(200000)
	for _, r := range got {
		if r.Status != "ok" || string(r.Output) != want {
			t.Fatalf("item %d: %s %q %s", r.Index, r.Status, r.Output, r.Message)
		}
	}
	// The new holders hold the whole job, done, once the home's last
	// writes reached them.
	final := home.ledger.holders(reply.JobID)
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range final[3:] {
		for {
			rec, err := byID[h].store.Job(reply.JobID)
			if err == nil && rec.Results == n && rec.State == api.JobDone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("new holder %s: %+v, %v; want the whole done job", h, rec, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c := home.metrics.nCopies.Load(); c != 2 {
		t.Fatalf("%d copies to new holders, want 2", c)
	}
}
