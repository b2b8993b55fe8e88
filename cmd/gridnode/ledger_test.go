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

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
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
