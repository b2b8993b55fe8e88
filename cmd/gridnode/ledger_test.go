package main

// Process-level tests of the replicated job ledger: a job's record, inputs
// and result log live on its home (the node that accepted it) and on two
// holders, so that the job outlives a kill -9 of its home and every node
// answers for it. They assert outcomes only; the times they log are the
// measurements.
//
// Environment:
//
//	GRIDNODE_LEDGER_ITEMS=N   items in TestLedgerHomeKilled (default 300).
//	GRIDNODE_LEDGER_WORK=W    the Work input of each of those items: W rounds
//	                          (default ledgerWork).
//	GRIDNODE_LEDGER_FAULT_ITEMS=N  items of TestLedgerFaults' jobs (default
//	                          2000).
//	GRIDNODE_LEDGER_FAULT_WORK=W   their Work input (default ledgerFaultWork).
//	GRIDNODE_LEDGER_SEEDS=R   rounds of each TestLedgerFaults subtest, each on
//	                          a fresh cluster, round r with seed
//	                          GRIDNODE_SEED + r (default 1).

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/gridnode/gridnode/transport"
)

// ledgerWork is the Work input of TestLedgerHomeKilled's items: about 40 ms
// per execution here, so that its job runs for several seconds.
const ledgerWork = 5 * gridSlowWork

// ledgerRetryPause is the pause before a results stream that failed is
// opened again from its cursor.
const ledgerRetryPause = 200 * time.Millisecond

// ledgerRead is what ledgerResults read.
type ledgerRead struct {
	got    map[uint64]api.Result
	status api.JobStatus // the final status the last stream ended with
	errs   int           // streams that ended in an error and were reopened
}

// ledgerResults follows job's result log through node i from the start until
// the job is done. A stream that fails (as while a job's home dies and its
// successor takes over) is logged and opened again from the last cursor
// after ledgerRetryPause, as long as retry (nil: always) allows it and
// timeout has not passed. It fails on an index delivered twice or a seq that
// goes back. each, if not nil, is called after every result with the number
// read so far.
func ledgerResults(t *testing.T, c *harness.Cluster, i int, job string, timeout time.Duration, retry func(error) bool, each func(r api.Result, n int)) ledgerRead {
	t.Helper()
	ctx, cancel := withTimeout(timeout)
	defer cancel()
	out := ledgerRead{got: map[uint64]api.Result{}}
	var cursor, lastSeq uint64
	var lastErr string
	logged := 0
	for {
		rs := c.Client(i).Results(job, sdk.ResultsOptions{Follow: true, Cursor: cursor})
		var err error
		for r, e := range rs.All(ctx) {
			if e != nil {
				err = e
				break
			}
			if old, dup := out.got[r.Index]; dup {
				t.Fatalf("job %s through n%d: item %d delivered twice: seq %d (%s) and seq %d (%s)",
					job, i, r.Index, old.Seq, old.Node, r.Seq, r.Node)
			}
			if r.Seq <= lastSeq {
				t.Fatalf("job %s through n%d: item %d: seq %d after seq %d: the log went back", job, i, r.Index, r.Seq, lastSeq)
			}
			lastSeq = r.Seq
			out.got[r.Index] = r
			if each != nil {
				each(r, len(out.got))
			}
		}
		cursor = rs.Cursor()
		st := rs.Status()
		rs.Close()
		if err == nil && st != nil {
			out.status = *st
			return out
		}
		if err == nil {
			err = errors.New("the stream ended without the job's final status")
		}
		if ctx.Err() != nil || (retry != nil && !retry(err)) {
			sctx, scancel := withTimeout(5 * time.Second)
			st, serr := c.Client(i).Status(sctx, job)
			scancel()
			t.Fatalf("reading job %s through n%d: %d results (cursor %d), %d failed streams, after %s: %v (the error before: %s)\nstatus through n%d: %+v %v",
				job, i, len(out.got), cursor, out.errs, timeout, err, lastErr, i, st, serr)
		}
		out.errs++
		if msg := err.Error(); msg != lastErr && logged < 10 {
			t.Logf("reading job %s through n%d after %d results (cursor %d): %v; reopening from the cursor", job, i, len(out.got), cursor, err)
			lastErr = msg
			logged++
		}
		select {
		case <-ctx.Done():
		case <-time.After(ledgerRetryPause):
		}
	}
}

// TestLedgerHomeKilled kills (kill -9) the home of a running job while its
// results are read through another node, and checks that the job still ends
// done with every item exactly once and the right bytes; then that the old
// home, restarted on its data, serves the same whole result log.
func TestLedgerHomeKilled(t *testing.T) {
	n := envInt(t, "GRIDNODE_LEDGER_ITEMS", 300)
	work := envInt(t, "GRIDNODE_LEDGER_WORK", ledgerWork)
	rng := rand.New(rand.NewPCG(uint64(testSeed(t)), 4))
	const home, reader = 1, 2
	c := gridStart(t, 3, nil)
	homeID := c.Node(home).ID
	mod := gridPush(t, c, home, testdata.Work)
	in, want := strconv.Itoa(work), testdata.WorkOutput(uint64(work))
	inputs := make([][]byte, n)
	wants := make([]string, n)
	for i := range inputs {
		inputs[i], wants[i] = []byte(in), want
	}
	// Kill once between 20% and 80% of the results have been read.
	killAfter := max(1, n/5+rng.IntN(n*3/5+1))

	start := time.Now()
	job := gridSubmit(t, c, home, api.JobSpec{Name: "ledger", Module: mod}, inputs)
	if !strings.HasPrefix(job, homeID+"-") {
		t.Fatalf("job ID %s does not name %s, which accepted it", job, homeID)
	}
	var killed time.Time
	var before api.JobStatus
	afterKill := 0
	first := ledgerResults(t, c, reader, job, 3*time.Minute, nil, func(r api.Result, read int) {
		if !killed.IsZero() {
			afterKill++
			return
		}
		if read < killAfter {
			return
		}
		ctx, cancel := withTimeout(10 * time.Second)
		st, err := c.Client(home).Status(ctx, job)
		cancel()
		if err != nil {
			t.Fatalf("status through %s before the kill: %v", homeID, err)
		}
		if st.Done() {
			t.Fatalf("the job ended before the kill: make the items slower (GRIDNODE_LEDGER_WORK): %+v", st)
		}
		before = st
		killed = time.Now()
		c.Kill(home)
		t.Logf("killed %s, the job's home, %s after the submit: %d of %d results read through n%d, %d committed",
			homeID, killed.Sub(start).Round(time.Millisecond), read, n, reader, st.Committed)
	})
	if killed.IsZero() {
		t.Fatalf("the job ended after %d results, before the kill", len(first.got))
	}
	end := time.Since(killed)
	late := 0
	for _, r := range first.got {
		if r.Seq > before.Committed {
			late++
		}
	}
	t.Logf("job done %s after the kill (%s after the submit); %d results read after the kill, %d committed after it; %d streams through n%d failed and were reopened; executions per node %v; committed executions took %s on average",
		end.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), afterKill, late, first.errs, reader, gridExecutions(first.got), gridMeanDuration(first.got))
	gridCheckOutputs(t, first.got, wants)
	if st := first.status; st.State != api.JobDone || st.Committed != uint64(n) || st.Failed != 0 {
		t.Errorf("final status through n%d: state %s, committed %d, failed %d; want done, %d, 0", reader, st.State, st.Committed, st.Failed, n)
	}

	// The old home comes back on its data dir and holds the whole job.
	m := members(t, c, reader)
	was, _ := harness.Member(m, homeID)
	restarted := time.Now()
	c.Restart(home, false)
	sctx, scancel := withTimeout(settleWait)
	defer scancel()
	err := c.Poll(sctx, func(r harness.Round) bool {
		if !settled(r, 3, 3) {
			return false
		}
		for _, m := range r.Members {
			if x, _ := harness.Member(m, homeID); x.Incarnation <= was.Incarnation {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("%s restarted but the cluster did not settle: %v", homeID, err)
	}
	t.Logf("%s restarted and the cluster settled in %s", homeID, time.Since(restarted).Round(time.Millisecond))
	readStart := time.Now()
	again := ledgerResults(t, c, home, job, time.Minute, nil, nil)
	t.Logf("the whole log read again through %s in %s (%d failed streams)", homeID, time.Since(readStart).Round(time.Millisecond), again.errs)
	gridCheckOutputs(t, again.got, wants)
	for idx, r := range again.got {
		if r1 := first.got[idx]; r.Seq != r1.Seq {
			t.Errorf("item %d: seq %d through %s, seq %d through n%d before: the logs differ", idx, r.Seq, homeID, r1.Seq, reader)
		}
	}
	if st := again.status; st.State != api.JobDone || st.Committed != uint64(n) || st.Failed != 0 {
		t.Errorf("final status through %s after its restart: state %s, committed %d, failed %d; want done, %d, 0", homeID, st.State, st.Committed, st.Failed, n)
	}
}

// TestLedgerSubmitAfterHomeDeath kills (kill -9) the home of a finished job
// and checks that another node still serves its status and all its results.
func TestLedgerSubmitAfterHomeDeath(t *testing.T) {
	const items = 20
	const home, asked = 1, 3
	c := gridStart(t, 3, nil)
	homeID := c.Node(home).ID
	mod := gridPush(t, c, home, testdata.Work)
	inputs, wants := gridWorkInputs(items, 500)
	job := gridSubmit(t, c, home, api.JobSpec{Name: "small", Module: mod}, inputs)
	got, st := gridResults(t, c, home, job, time.Minute)
	gridCheckOutputs(t, got, wants)
	if st.State != api.JobDone {
		t.Fatalf("status through %s: state %s, want done", homeID, st.State)
	}

	killed := time.Now()
	c.Kill(home)
	// The survivors need a moment to notice the death.
	waiting := func(err error) bool {
		code := transport.CodeOf(err)
		return code == transport.CodeUnavailable || code == transport.CodeNotFound
	}
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	tries := 0
	var prev error // the last error that said to wait
	for {
		tries++
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		st, err = c.Client(asked).Status(cctx, job)
		ccancel()
		if err == nil {
			break
		}
		if !waiting(err) || ctx.Err() != nil {
			t.Fatalf("status of job %s through n%d, %s after %s died (%d tries): %v (the error before: %v)", job, asked, time.Since(killed).Round(time.Millisecond), homeID, tries, err, prev)
		}
		prev = err
		select {
		case <-ctx.Done():
		case <-time.After(ledgerRetryPause):
		}
	}
	t.Logf("n%d answered for job %s %s after %s died (%d tries): state %s, committed %d", asked, job, time.Since(killed).Round(time.Millisecond), homeID, tries, st.State, st.Committed)
	if st.State != api.JobDone || st.Committed != items {
		t.Errorf("status through n%d: state %s, committed %d; want done, %d", asked, st.State, st.Committed, items)
	}
	read := ledgerResults(t, c, asked, job, 30*time.Second, waiting, nil)
	gridCheckOutputs(t, read.got, wants)
	if st := read.status; st.State != api.JobDone || st.Committed != items {
		t.Errorf("final status of the results through n%d: state %s, committed %d; want done, %d", asked, st.State, st.Committed, items)
	}
}

// ledgerFaultWork is the Work input of TestLedgerFaults' items: with the
// default 2000 items, a fault-free job on five agents takes 7-8 s on a
// two-core machine (150,000: about 6 s; 200,000: 8-9 s).
const ledgerFaultWork = 175_000

// ledgerFault is one fault of TestLedgerFaults: it hits some nodes at a
// random point of a job's run and is mended a while later.
type ledgerFault struct {
	name  string
	proxy bool // the nodes talk through the udpproxy
	// victims picks the nodes the fault hits among m's, given the job's
	// home; the reader is picked among the others.
	victims func(rng *rand.Rand, m api.Members, home int) []int
	what    string // what hit does, for the logs
	// hit runs in the test's goroutine; mend, after mendAfter, in another.
	hit       func(c *harness.Cluster, victims []int)
	mendAfter time.Duration
	mend      func(c *harness.Cluster, victims []int)
}

// ledgerAny hits one node, any of them.
func ledgerAny(rng *rand.Rand, m api.Members, _ int) []int {
	return []int{1 + rng.IntN(len(m.Members))}
}

// ledgerHome hits the job's home alone.
func ledgerHome(_ *rand.Rand, _ api.Members, home int) []int { return []int{home} }

// ledgerHomeAndOne hits the job's home and one other node.
func ledgerHomeAndOne(rng *rand.Rand, m api.Members, home int) []int {
	other := 1 + rng.IntN(len(m.Members)-1)
	if other >= home {
		other++
	}
	return []int{home, other}
}

// ledgerMinority hits the job's home and one other node such that the two
// hold at most one of the monitors: the three others keep a majority of
// them, so that they can declare the two dead (with two monitors of three
// cut off, neither side could, and the job would wait for the heal).
func ledgerMinority(rng *rand.Rand, m api.Members, home int) []int {
	homeID := fmt.Sprintf("n%d", home)
	x, _ := harness.Member(m, homeID)
	var pick []int
	for _, y := range m.Members {
		if y.NodeID != homeID && (!x.Monitor || !y.Monitor) {
			pick = append(pick, index(y.NodeID))
		}
	}
	slices.Sort(pick)
	return []int{home, pick[rng.IntN(len(pick))]}
}

func ledgerKill(c *harness.Cluster, victims []int) {
	for _, v := range victims {
		c.Kill(v)
	}
}

func ledgerRestart(c *harness.Cluster, victims []int) {
	for _, v := range victims {
		c.Restart(v, false)
	}
}

// ledgerIDs names nodes.
func ledgerIDs(c *harness.Cluster, nodes []int) []string {
	out := make([]string, len(nodes))
	for k, i := range nodes {
		out[k] = c.Node(i).ID
	}
	return out
}

// ledgerOthers lists the nodes 1..c.N() not in nodes.
func ledgerOthers(c *harness.Cluster, nodes ...int) []int {
	var out []int
	for i := 1; i <= c.N(); i++ {
		if !slices.Contains(nodes, i) {
			out = append(out, i)
		}
	}
	return out
}

// ledgerFaults are TestLedgerFaults' subtests.
var ledgerFaults = []ledgerFault{
	{
		name:      "kill-restart",
		victims:   ledgerAny,
		what:      "killed (kill -9)",
		hit:       ledgerKill,
		mendAfter: 10 * time.Second,
		mend:      ledgerRestart,
	},
	{
		name:      "home-killed",
		victims:   ledgerHome,
		what:      "killed (kill -9)",
		hit:       ledgerKill,
		mendAfter: 10 * time.Second,
		mend:      ledgerRestart,
	},
	{
		name:      "two-killed",
		victims:   ledgerHomeAndOne,
		what:      "killed (kill -9)",
		hit:       ledgerKill,
		mendAfter: 10 * time.Second,
		mend:      ledgerRestart,
	},
	{
		name:    "paused",
		victims: ledgerHome,
		what:    "paused (SIGSTOP)",
		hit: func(c *harness.Cluster, victims []int) {
			for _, v := range victims {
				c.Stop(v)
			}
		},
		mendAfter: 5 * time.Second,
		mend: func(c *harness.Cluster, victims []int) {
			for _, v := range victims {
				c.Cont(v)
			}
		},
	},
	{
		name:    "split",
		proxy:   true,
		victims: ledgerMinority,
		what:    "cut off from the other three (partition)",
		hit: func(c *harness.Cluster, victims []int) {
			c.Proxy().Partition(ledgerIDs(c, ledgerOthers(c, victims...)), ledgerIDs(c, victims))
		},
		mendAfter: 8 * time.Second,
		mend:      func(c *harness.Cluster, _ []int) { c.Proxy().Heal() },
	},
}

// TestLedgerFaults runs a job on five agents and, at a random point between
// 20% and 80% of its results, kills, pauses or cuts off some nodes (the
// job's home among them but for kill-restart, where the victim is any node),
// mends the fault a few seconds later, and checks that the job still ends
// done with every item exactly once and the right bytes, read through a
// node the fault spared. Each subtest runs GRIDNODE_LEDGER_SEEDS rounds,
// each on a fresh cluster, round r with seed GRIDNODE_SEED + r:
//
//	GRIDNODE_LEDGER_SEEDS=20 go test -count=1 -timeout 60m -run TestLedgerFaults -v ./cmd/gridnode/
//
// GRIDNODE_LEDGER_FAULT_ITEMS (default 2000) and GRIDNODE_LEDGER_FAULT_WORK
// (default ledgerFaultWork) size the job.
func TestLedgerFaults(t *testing.T) {
	n := envInt(t, "GRIDNODE_LEDGER_FAULT_ITEMS", 2000)
	work := envInt(t, "GRIDNODE_LEDGER_FAULT_WORK", ledgerFaultWork)
	rounds := envInt(t, "GRIDNODE_LEDGER_SEEDS", 1)
	seed := testSeed(t)
	for k, f := range ledgerFaults {
		t.Run(f.name, func(t *testing.T) {
			for round := range rounds {
				s := seed + int64(round)
				t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
					t.Logf("seed %d (GRIDNODE_SEED=%d GRIDNODE_LEDGER_SEEDS=1 -run 'TestLedgerFaults/%s' replays this round)", s, s, f.name)
					ledgerFaultRound(t, f, rand.New(rand.NewPCG(uint64(s), uint64(10+k))), s, n, work)
				})
			}
		})
	}
}

// ledgerFaultRound is one round of TestLedgerFaults on a fresh cluster.
func ledgerFaultRound(t *testing.T, f ledgerFault, rng *rand.Rand, seed int64, n, work int) {
	const nodes = 5
	c := startCluster(t, harness.Options{N: nodes, Labels: harness.HostLabels, Proxy: f.proxy, Seed: seed})
	home := 1 + rng.IntN(nodes)
	m := members(t, c, home)
	victims := f.victims(rng, m, home)
	spared := ledgerOthers(c, append([]int{home}, victims...)...)
	reader := spared[rng.IntN(len(spared))]
	hitAfter := max(1, n/5+rng.IntN(n*3/5+1))
	homeID, vids := c.Node(home).ID, ledgerIDs(c, victims)
	t.Logf("%d items of Work %d submitted to %s (the job's home), read through %s; after %d results, %v %s, mended %s later; %s",
		n, work, homeID, c.Node(reader).ID, hitAfter, vids, f.what, f.mendAfter, harness.Summary(m))

	mod := gridPush(t, c, home, testdata.Work)
	in, want := strconv.Itoa(work), testdata.WorkOutput(uint64(work))
	inputs := make([][]byte, n)
	wants := make([]string, n)
	for i := range inputs {
		inputs[i], wants[i] = []byte(in), want
	}

	// The mend runs in its own goroutine, so that reading goes on; should
	// the test end first, the cleanup (before the harness's own) calls it
	// off and waits for it.
	var mending sync.WaitGroup
	callOff := make(chan struct{})
	t.Cleanup(func() {
		close(callOff)
		mending.Wait()
	})
	var (
		firstAt         time.Time // the first result read
		hitAt, mendedAt time.Time
		before          api.JobStatus
		readAtHit       int
		views           string // the reader's view of the victims just before the mend
		lastResult      time.Time
		stall           time.Duration // the longest pause between two results after the hit
	)
	start := time.Now()
	job := gridSubmit(t, c, home, api.JobSpec{Name: "ledger-" + f.name, Module: mod}, inputs)
	if !strings.HasPrefix(job, homeID+"-") {
		t.Fatalf("job ID %s does not name %s, which accepted it", job, homeID)
	}
	t.Cleanup(func() {
		if t.Failed() {
			since, what := hitAt, "the fault"
			if since.IsZero() {
				since, what = start, "the submit"
			}
			t.Logf("the agents' logs after %s: %s", what, ledgerLogEvents(c, job, since))
		}
	})
	read := ledgerResults(t, c, reader, job, 90*time.Second, nil, func(r api.Result, got int) {
		now := time.Now()
		if firstAt.IsZero() {
			firstAt = now
		}
		if !hitAt.IsZero() {
			stall = max(stall, now.Sub(lastResult))
			lastResult = now
			return
		}
		if got < hitAfter {
			return
		}
		ctx, cancel := withTimeout(10 * time.Second)
		st, err := c.Client(reader).Status(ctx, job)
		cancel()
		if err != nil {
			t.Fatalf("status through n%d before the fault: %v", reader, err)
		}
		if st.Done() {
			t.Fatalf("the job ended before the fault: make it longer (GRIDNODE_LEDGER_FAULT_ITEMS, GRIDNODE_LEDGER_FAULT_WORK): %+v", st)
		}
		before, readAtHit = st, got
		hitAt = time.Now()
		f.hit(c, victims)
		lastResult = time.Now()
		t.Logf("%v %s %s after the submit (in %s): %d of %d results read through n%d, %d committed",
			vids, f.what, hitAt.Sub(start).Round(time.Millisecond), time.Since(hitAt).Round(time.Millisecond), got, n, reader, st.Committed)
		mending.Go(func() {
			select {
			case <-callOff:
				return
			case <-time.After(time.Until(hitAt.Add(f.mendAfter))):
			}
			views = ledgerViews(c, reader, vids)
			if p := c.Proxy(); p != nil {
				st := p.Stats()
				views += fmt.Sprintf("; the proxy dropped %d datagrams by the partition, forwarded %d", st.DroppedPartition, st.Forwarded)
			}
			f.mend(c, victims)
			mendedAt = time.Now()
		})
	})
	done := time.Now()
	if hitAt.IsZero() {
		t.Fatalf("the job ended after %d results, before the fault", len(read.got))
	}
	jobTook, afterHit := done.Sub(start), done.Sub(hitAt)
	// Fault-free equivalents: the wait for the first result, then the
	// rate results came at from it to the fault.
	rate := float64(readAtHit-1) / hitAt.Sub(firstAt).Seconds()
	freeJob := firstAt.Sub(start) + time.Duration(float64(n-1)/rate*float64(time.Second))
	freeRest := freeJob - hitAt.Sub(start)
	late := 0
	for _, r := range read.got {
		if r.Seq > before.Committed {
			late++
		}
	}
	t.Logf("job done %s after the submit, %s after the fault (fault-free equivalent at the %.0f results/s before it: %s and %s); longest pause in the results after the fault %s; %d results committed after the fault; %d streams through n%d failed and were reopened",
		jobTook.Round(time.Millisecond), afterHit.Round(time.Millisecond), rate, freeJob.Round(time.Millisecond), freeRest.Round(time.Millisecond),
		stall.Round(time.Millisecond), late, read.errs, reader)
	t.Logf("executions per node %v; committed executions took %s on average", gridExecutions(read.got), gridMeanDuration(read.got))
	gridCheckOutputs(t, read.got, wants)
	if st := read.status; st.State != api.JobDone || st.Committed != uint64(n) || st.Failed != 0 {
		t.Errorf("final status through n%d: state %s, committed %d, failed %d; want done, %d, 0", reader, st.State, st.Committed, st.Failed, n)
	}

	// Wait for the mend, then for the victims back at a new incarnation in
	// a settled cluster: logged, not asserted.
	mending.Wait()
	when := fmt.Sprintf("%s after the job was done", mendedAt.Sub(done).Round(time.Millisecond))
	if mendedAt.Before(done) {
		when = fmt.Sprintf("%s before the job was done", done.Sub(mendedAt).Round(time.Millisecond))
	}
	t.Logf("mended %s after the fault (%s); n%d saw before the mend: %s", mendedAt.Sub(hitAt).Round(time.Millisecond), when, reader, views)
	ctx, cancel := withTimeout(settleWait)
	defer cancel()
	var last harness.Round
	err := c.Poll(ctx, func(r harness.Round) bool {
		last = r
		if len(r.Live) != nodes || !settled(r, nodes, 3) {
			return false
		}
		for _, now := range r.Members {
			for _, id := range vids {
				was, _ := harness.Member(m, id)
				if x, _ := harness.Member(now, id); x.Incarnation <= was.Incarnation {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		t.Logf("the five did not settle with %v at a new incarnation within %s of the mend (not asserted): %v", vids, settleWait, err)
	} else {
		t.Logf("the five settled with %v at a new incarnation %s after the mend:%s", vids, time.Since(mendedAt).Round(time.Millisecond), last)
	}
	t.Logf("the agents' logs after the fault: %s", ledgerLogEvents(c, job, hitAt))
}

// ledgerViews says how node i sees the nodes ids: "n3 dead/1, n4 alive/1".
func ledgerViews(c *harness.Cluster, i int, ids []string) string {
	ctx, cancel := withTimeout(2 * time.Second)
	defer cancel()
	m, err := c.Members(ctx, i)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, id := range ids {
		x, _ := harness.Member(m, id)
		out = append(out, fmt.Sprintf("%s %s/%d", id, x.State, x.Incarnation))
	}
	return strings.Join(out, ", ")
}

// ledgerLogEvents sums up what the agents logged about job's ledger and
// their own deaths since since: per node, how many times and when first
// (relative to since).
func ledgerLogEvents(c *harness.Cluster, job string, since time.Time) string {
	events := []struct{ msg, short string }{
		{"this node was declared dead", "declared dead, rejoining"},
		{"took over a job as its home", "took over"},
		{"cannot take over a job yet", "cannot take over yet"},
		{"no longer the home of a job", "no longer the home"},
		{"holding results", "holding results"},
		{"cannot commit results", "cannot commit"},
		{"rolling back executions whose coordinator is gone", "rolled back executions of a gone coordinator"},
	}
	var out []string
	for i := 1; i <= c.N(); i++ {
		nd := c.Node(i)
		b, err := os.ReadFile(nd.LogFile)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", nd.ID, err))
			continue
		}
		count := make([]int, len(events))
		first := make([]time.Duration, len(events))
		for line := range strings.Lines(string(b)) {
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			tm, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil || tm.Before(since) {
				continue
			}
			for k, e := range events {
				if strings.Contains(line, e.msg) && (!strings.Contains(line, "job=") || strings.Contains(line, "job="+job)) {
					if count[k]++; count[k] == 1 {
						first[k] = tm.Sub(since)
					}
				}
			}
		}
		var said []string
		for k, e := range events {
			if count[k] > 0 {
				said = append(said, fmt.Sprintf("%s %d× from +%s", e.short, count[k], first[k].Round(time.Millisecond)))
			}
		}
		if len(said) > 0 {
			out = append(out, nd.ID+": "+strings.Join(said, ", "))
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, "; ")
}
