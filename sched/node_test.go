package sched_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	plugins.MaybeServeWorker()
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// cluster is one node on an in-memory network with a client for it.
type cluster struct {
	t    *testing.T
	net  *transport.MemNetwork
	dir  string
	node *sched.Node
	c    *sdk.Client
}

func newCluster(t *testing.T, iso plugins.Isolation) *cluster {
	t.Helper()
	cl := &cluster{t: t, net: transport.NewMemNetwork(1), dir: t.TempDir()}
	cl.start(iso)
	t.Cleanup(cl.stop)
	return cl
}

func (cl *cluster) start(iso plugins.Isolation) {
	cl.t.Helper()
	n, err := sched.StartNode(context.Background(), sched.Config{
		DataDir: cl.dir, ListenAddr: "node:1", NodeID: "node", Isolation: iso, Slots: 2,
		Network: cl.net.Host("node", transport.Peer{Role: transport.RoleNode, ID: "node"}),
		Logger:  slog.New(slog.NewTextHandler(testWriter{cl.t}, &slog.HandlerOptions{Level: testLogLevel()})),
	})
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.node = n
	c, err := sdk.Dial(context.Background(), sdk.Config{Addr: "node:1",
		Network: cl.net.Host("client", transport.Peer{Role: transport.RoleClient, ID: "test"})})
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.c = c
}

// testWriter sends the node's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (cl *cluster) stop() {
	if cl.c != nil {
		cl.c.Close()
		cl.c = nil
	}
	if cl.node != nil {
		cl.node.Close()
		cl.node = nil
	}
}

func (cl *cluster) push(wasm []byte) string {
	cl.t.Helper()
	r, err := cl.c.PushModule(context.Background(), wasm)
	if err != nil {
		cl.t.Fatal(err)
	}
	return r.Hash
}

func rangeInputs(lo, hi int) [][]byte {
	var out [][]byte
	for i := lo; i < hi; i++ {
		out = append(out, []byte(strconv.Itoa(i)))
	}
	return out
}

// readAll follows a job's results to the end and checks that no item is
// returned twice.
func readAll(t *testing.T, c *sdk.Client, job string, cursor uint64) map[uint64]api.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[uint64]api.Result{}
	rs := c.Results(job, sdk.ResultsOptions{Cursor: cursor, Follow: true})
	defer rs.Close()
	for r, err := range rs.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[r.Index]; dup {
			t.Fatalf("item %d returned twice", r.Index)
		}
		out[r.Index] = r
	}
	return out
}

func TestJobRunsEveryItemOnceWithTheRightBytes(t *testing.T) {
	for _, iso := range []plugins.Isolation{plugins.InProcess, plugins.Process} {
		t.Run(string(iso), func(t *testing.T) {
			cl := newCluster(t, iso)
			mod := cl.push(testdata.Work)
			const n = 300
			reply, err := cl.c.Submit(context.Background(), api.JobSpec{Module: mod}, sdk.Items(rangeInputs(0, n)...))
			if err != nil {
				t.Fatal(err)
			}
			if reply.Items != n {
				t.Fatalf("accepted %d items, want %d", reply.Items, n)
			}
			got := readAll(t, cl.c, reply.JobID, 0)
			if len(got) != n {
				t.Fatalf("%d results, want %d", len(got), n)
			}
			seqs := map[uint64]bool{}
			for i := range uint64(n) {
				r := got[i]
				if want := testdata.WorkOutput(i); string(r.Output) != want || !r.OK() {
					t.Fatalf("item %d: %s %q, want ok %q", i, r.Status, r.Output, want)
				}
				if r.ItemID != sched.ItemID(reply.JobID, i) || seqs[r.Seq] {
					t.Fatalf("item %d: item ID %s seq %d", i, r.ItemID, r.Seq)
				}
				seqs[r.Seq] = true
			}
			st, err := cl.c.Status(context.Background(), reply.JobID)
			if err != nil || st.State != api.JobDone || st.Committed != n || st.Failed != 0 || st.ByStatus["ok"] != n {
				t.Fatalf("status %+v %v", st, err)
			}
		})
	}
}

func TestOutcomesAreCommittedWithTheirReasons(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	cases := []struct {
		wasm   []byte
		file   string
		status string
	}{
		{nil, "../testdata/exit3/exit3.wasm", "exit"},
		{nil, "../testdata/hostile/trap.wasm", "trap"},
		{nil, "../testdata/hostile/loop.wasm", "deadline"},
	}
	for _, tc := range cases {
		wasm, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		mod := cl.push(wasm)
		spec := api.JobSpec{Module: mod, Policy: api.Policy{Limits: api.Limits{Deadline: 200 * time.Millisecond}}}
		reply, err := cl.c.Submit(ctx, spec, sdk.Items([]byte("a"), []byte("b")))
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, cl.c, reply.JobID, 0)
		for i, r := range got {
			if r.Status != tc.status || r.Message == "" || r.Digest == "" {
				t.Errorf("%s item %d: status %s message %q digest %q, want %s with a message", tc.file, i, r.Status, r.Message, r.Digest, tc.status)
			}
		}
		if got[0].Digest != got[1].Digest {
			t.Errorf("%s: equal failures have different digests %s, %s", tc.file, got[0].Digest, got[1].Digest)
		}
		st, _ := cl.c.Status(ctx, reply.JobID)
		if st.State != api.JobDone || st.Failed != 2 || st.ByStatus[tc.status] != 2 {
			t.Errorf("%s: status %+v", tc.file, st)
		}
	}
}

func TestRestartResumesAcceptedJob(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	mod := cl.push(testdata.Work)
	const n = 400
	// Items of ~0.3 ms each: the node is stopped long before they are all done.
	inputs := make([][]byte, n)
	for i := range inputs {
		inputs[i] = []byte(strconv.Itoa(20000 + i))
	}
	reply, err := cl.c.Submit(ctx, api.JobSpec{Module: mod}, sdk.Items(inputs...))
	if err != nil {
		t.Fatal(err)
	}
	// Read a few results, remember the cursor, stop the node.
	rs := cl.c.Results(reply.JobID, sdk.ResultsOptions{Follow: true})
	before := map[uint64]api.Result{}
	for len(before) < 10 {
		r, ok := rs.Next(ctx)
		if !ok {
			t.Fatal(rs.Err())
		}
		before[r.Index] = r
	}
	cursor := rs.Cursor()
	rs.Close()
	cl.stop()
	cl.start(plugins.InProcess)

	st, err := cl.c.Status(ctx, reply.JobID)
	if err != nil {
		t.Fatalf("job lost across a restart: %v", err)
	}
	t.Logf("after restart: %d of %d items have results", st.Committed+st.Failed, st.Items)
	rest := readAll(t, cl.c, reply.JobID, cursor)
	all := readAll(t, cl.c, reply.JobID, 0)
	if len(all) != n {
		t.Fatalf("%d results after restart, want %d", len(all), n)
	}
	for idx, r := range before {
		if _, again := rest[idx]; again {
			t.Fatalf("item %d returned before the cursor and again after it", idx)
		}
		if all[idx].Seq != r.Seq || string(all[idx].Output) != string(r.Output) {
			t.Fatalf("committed result %d changed across a restart", idx)
		}
	}
	for i := range uint64(n) {
		if want := testdata.WorkOutput(20000 + i); string(all[i].Output) != want {
			t.Fatalf("item %d: %q, want %q", i, all[i].Output, want)
		}
	}
}

func TestCancelStopsRunningExecutions(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	wasm, err := os.ReadFile("../testdata/hostile/loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	mod := cl.push(wasm)
	spec := api.JobSpec{Module: mod, Policy: api.Policy{Limits: api.Limits{Deadline: time.Hour}}}
	reply, err := cl.c.Submit(ctx, spec, sdk.Items(rangeInputs(0, 10)...))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := cl.c.Status(ctx, reply.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Running == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions never started: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := cl.c.Cancel(ctx, reply.JobID)
	if err != nil || st.State != api.JobCancelled {
		t.Fatalf("cancel: %+v %v", st, err)
	}
	// The node's slots are free again: a new job runs.
	mod2 := cl.push(testdata.Echo)
	r2, err := cl.c.Submit(ctx, api.JobSpec{Module: mod2}, sdk.Items([]byte("after cancel")))
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, cl.c, r2.JobID, 0)
	if string(got[0].Output) != "after cancel" {
		t.Fatalf("echo after cancel: %+v", got[0])
	}
	if _, err := cl.c.Cancel(ctx, "nope-1-1"); transport.CodeOf(err) != transport.CodeNotFound {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

func TestSubmitRefusals(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	mod := cl.push(testdata.Echo)
	cases := []struct {
		name string
		spec api.JobSpec
		code transport.Code
		want string
	}{
		{"missing module", api.JobSpec{Module: string(plugins.HashOf([]byte("nothing")))}, api.CodeModuleMissing, "push it first"},
		{"bad module name", api.JobSpec{Module: "md5:abc"}, transport.CodeBadRequest, "md5:abc"},
		{"over the memory max", api.JobSpec{Module: mod, Policy: api.Policy{Limits: api.Limits{MemoryBytes: 1 << 40}}}, api.CodeLimit, "memory"},
		{"bad file path", api.JobSpec{Module: mod, Files: map[string][]byte{"../etc/passwd": nil}}, transport.CodeBadRequest, "relative path"},
		{"attempts", api.JobSpec{Module: mod, Policy: api.Policy{Attempts: -1}}, transport.CodeBadRequest, "attempts"},
	}
	for _, tc := range cases {
		_, err := cl.c.Submit(ctx, tc.spec, sdk.Items([]byte("x")))
		if transport.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want code %s mentioning %q", tc.name, err, tc.code, tc.want)
		}
	}
	// An empty job is refused; a job of too-large items too, and nothing of it stays.
	if _, err := cl.c.Submit(ctx, api.JobSpec{Module: mod}, sdk.Items()); transport.CodeOf(err) != transport.CodeBadRequest {
		t.Errorf("empty job: %v", err)
	}
	big := make([]byte, api.MaxItemInput+1)
	if _, err := cl.c.Submit(ctx, api.JobSpec{Module: mod}, sdk.Items(big)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized item: %v", err)
	}
	jobs, err := cl.c.Jobs(ctx)
	if err != nil || len(jobs) != 0 {
		t.Fatalf("refused submits left jobs behind: %v %v", jobs, err)
	}
	// An invalid module is refused at push with its reason.
	_, err = cl.c.PushModule(ctx, []byte("\x00asm\x0d\x00\x01\x00"))
	if transport.CodeOf(err) != api.CodeInvalidModule || !strings.Contains(err.Error(), "wasm32-wasip1") {
		t.Errorf("component push: %v", err)
	}
}

func TestMalformedStreamsAcceptNothing(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	mod := cl.push(testdata.Echo)
	// A raw client: header, one batch, then a lying end frame.
	tc, err := transport.Dial(ctx, cl.net.Host("raw", transport.Peer{Role: transport.RoleClient, ID: "raw"}), "node:1", transport.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	st, err := tc.Stream(ctx, api.MethodJobSubmit)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(api.SubmitHeader{Spec: api.JobSpec{Module: mod}})
	st.Send(api.SubmitFrame{Batch: &api.ItemBatch{Inputs: [][]byte{[]byte("a"), []byte("b")}}})
	st.Send(api.SubmitFrame{End: &api.SubmitEnd{Count: 3}})
	st.CloseSend()
	var reply api.SubmitReply
	if err := st.Recv(&reply); transport.CodeOf(err) != transport.CodeBadRequest {
		t.Fatalf("lying end frame: reply %+v err %v", reply, err)
	}
	// A stream that just stops.
	st2, _ := tc.Stream(ctx, api.MethodJobSubmit)
	st2.Send(api.SubmitHeader{Spec: api.JobSpec{Module: mod}})
	st2.Send(api.SubmitFrame{Batch: &api.ItemBatch{Inputs: [][]byte{[]byte("a")}}})
	st2.CloseSend()
	if err := st2.Recv(&reply); transport.CodeOf(err) != transport.CodeBadRequest {
		t.Fatalf("truncated stream: reply %+v err %v", reply, err)
	}
	// Wrong types where a header, a frame or a request belongs.
	for _, bad := range []struct {
		method string
		msgs   []any
	}{
		{api.MethodJobSubmit, []any{"not a header"}},
		{api.MethodJobSubmit, []any{api.SubmitHeader{Spec: api.JobSpec{Module: mod}}, []int{1, 2, 3}}},
		{api.MethodJobSubmit, []any{api.SubmitHeader{Spec: api.JobSpec{Module: mod}}, api.SubmitFrame{}}},
		{api.MethodJobResults, []any{map[string]int{"JobID": 5}}},
		{api.MethodModulePush, []any{api.ModuleChunk{Data: []byte("not wasm")}}},
	} {
		st, err := tc.Stream(ctx, bad.method)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range bad.msgs {
			st.Send(m)
		}
		st.CloseSend()
		var reply api.SubmitReply
		err = st.Recv(&reply)
		t.Logf("%s: %v", bad.method, err)
		if err == nil || transport.CodeOf(err) == transport.CodeInternal {
			t.Errorf("%s with %v: err %v, want a refusal naming the problem", bad.method, bad.msgs, err)
		}
	}
	if jobs, _ := cl.c.Jobs(ctx); len(jobs) != 0 {
		t.Fatalf("truncated or malformed submits left %d jobs", len(jobs))
	}
	// The node still serves.
	if _, err := cl.c.Info(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	mod := cl.push(testdata.Echo)
	spec := api.JobSpec{Module: mod, IdempotencyKey: "nightly-2026-11-22"}
	a, err := cl.c.Submit(ctx, spec, sdk.Items([]byte("1"), []byte("2")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.c.Submit(ctx, spec, sdk.Items([]byte("1"), []byte("2")))
	if err != nil {
		t.Fatal(err)
	}
	if a.JobID != b.JobID || a.Existed || !b.Existed || b.Items != 2 {
		t.Fatalf("first %+v, retry %+v: want the same job", a, b)
	}
	jobs, _ := cl.c.Jobs(ctx)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
}

func TestResultsCursorResumes(t *testing.T) {
	cl := newCluster(t, plugins.InProcess)
	ctx := context.Background()
	mod := cl.push(testdata.Echo)
	reply, err := cl.c.Submit(ctx, api.JobSpec{Module: mod}, sdk.Items(rangeInputs(0, 50)...))
	if err != nil {
		t.Fatal(err)
	}
	all := readAll(t, cl.c, reply.JobID, 0)
	var cursor uint64
	for _, r := range all {
		if r.Seq == 20 {
			cursor = r.Seq
		}
	}
	rest := readAll(t, cl.c, reply.JobID, cursor)
	if len(rest) != 30 {
		t.Fatalf("resuming after seq 20 gave %d results, want 30", len(rest))
	}
	for _, r := range rest {
		if r.Seq <= 20 {
			t.Fatalf("result seq %d came again after cursor 20", r.Seq)
		}
	}
	// A cursor past the end is refused with a reason.
	rs := cl.c.Results(reply.JobID, sdk.ResultsOptions{Cursor: 999})
	if _, ok := rs.Next(ctx); ok || transport.CodeOf(rs.Err()) != transport.CodeBadRequest {
		t.Fatalf("cursor past the end: %v", rs.Err())
	}
	// Results of an unknown job.
	rs = cl.c.Results("nope-1-1", sdk.ResultsOptions{})
	if _, ok := rs.Next(ctx); ok || transport.CodeOf(rs.Err()) != transport.CodeNotFound {
		t.Fatalf("unknown job: %v", rs.Err())
	}
}

func ExampleItemID() {
	fmt.Println(sched.ItemID("n1-1-7", 0))
	// Output: 179ce2acc8dbc355157acc0570a345c9
}

func TestFailuresNotTheModulesAreRetriedThenReported(t *testing.T) {
	cl := newCluster(t, plugins.Process)
	ctx := context.Background()
	loop, err := os.ReadFile("../testdata/hostile/loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := cl.c.Submit(ctx, api.JobSpec{Module: cl.push(loop), Policy: api.Policy{Limits: api.Limits{Deadline: time.Hour}}},
		sdk.Items([]byte("1"), []byte("2")))
	if err != nil {
		t.Fatal(err)
	}
	// With both slots busy, submit a job, then take its module away from
	// the node's store: every execution of it fails for a reason that is
	// not the module's.
	mod := cl.push(testdata.Echo)
	reply, err := cl.c.Submit(ctx, api.JobSpec{Module: mod, Policy: api.Policy{Attempts: 2}}, sdk.Items([]byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(mod, "sha256:")
	if err := os.Remove(filepath.Join(cl.dir, "plugins", "modules", hex+".wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.c.Cancel(ctx, busy.JobID); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, cl.c, reply.JobID, 0)
	r := got[0]
	if r.Status != api.StatusAttempts || r.Attempts != 2 || !strings.Contains(r.Message, "2 of 2 attempts used") || !strings.Contains(r.Message, "could not be fetched") {
		t.Fatalf("result %+v: want attempts_exhausted after 2 attempts, naming the missing module", r)
	}
}

// testLogLevel is warn, or debug with GRIDNODE_TEST_DEBUG set.
func testLogLevel() slog.Level {
	if os.Getenv("GRIDNODE_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
