package sched

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
)

// runner runs one task; *plugins.Sandbox is the real one.
type runner interface {
	Execute(ctx context.Context, t plugins.Task) plugins.Outcome
}

// Executor limits: a bounded queue, so that a coordinator learns at once
// that this node is full and places the item on the next node of its
// ranking; and a bound on staged outcomes waiting for their vote.
const (
	queuePerSlot     = 32
	minQueue         = 64
	maxStagedBytes   = 256 << 20
	stagedTTL        = 30 * time.Minute // a staged outcome nobody took or dropped (its coordinator forgot it)
	takeBudget       = 6 << 20          // outcome bytes in one take response
	reportRetryEvery = 200 * time.Millisecond
	// inlineOutcome is the largest staged outcome (in bytes, see
	// execution.bytes) that its report carries, so that the coordinator
	// need not take it; larger ones wait on the executor for a take.
	inlineOutcome = 64 << 10
	reportBytes   = 4 << 20 // report bytes in one batch
)

type execStage uint8

const (
	stageQueued execStage = iota + 1
	stageRunning
	stageStaged
)

// execution is one execution this node holds: queued, running, or finished
// with its outcome staged until the vote takes or drops it.
type execution struct {
	id       string
	coord    string
	coordInc uint64
	job      *execJob
	idx      uint64
	input    []byte
	resume   bool // ask the job's home for the item's checkpoint before it starts
	stage    execStage
	cancel   context.CancelFunc
	dropped  bool // rolled back while running: discard the outcome
	out      plugins.Outcome
	staged   time.Time
}

func (x *execution) bytes() int {
	return len(x.out.Stdout) + len(x.out.Stderr) + len(x.out.Message) + emittedBytes(x.out.Emitted) + 256
}

func emittedBytes(e [][]byte) int {
	n := 0
	for _, b := range e {
		n += len(b) + 8
	}
	return n
}

// execJob is what the executor knows of a job: its header, and once
// prepared (module fetched, files in place) the template of its tasks.
type execJob struct {
	hdr  jobHeader
	refs int // executions held; guarded by the executor's mutex

	mu   sync.Mutex // held while preparing
	ok   bool
	task plugins.Task // template of the job's tasks, once ok
}

// executor runs the executions coordinators send this node.
type executor struct {
	n        *Node
	run      runner
	slots    int
	queueCap int
	log      *slog.Logger
	reports  outboxes[reportItem]
	ckpts    outboxes[ckptItem] // per job home: checkpoints saved by running executions

	mu struct {
		sync.Mutex
		cond    *sync.Cond
		queue   []*execution
		execs   map[string]*execution
		jobs    map[string]*execJob
		staged  int
		running int
		closed  bool
	}
}

// reportItem is one report on its way to a coordinator.
type reportItem struct {
	coordInc uint64
	rep      execReport
}

func (c ckptItem) size() int { return len(c.Sealed) + len(c.Job) + 16 }

func (r reportItem) size() int {
	n := len(r.rep.ID) + len(r.rep.Digest) + len(r.rep.Message) + 64
	if o := r.rep.Outcome; o != nil {
		n += len(o.Stdout) + len(o.Stderr) + len(o.Message) + emittedBytes(o.Emitted) + 64
	}
	return n
}

// stagedOf is an outcome as a coordinator receives it.
func stagedOf(id string, o plugins.Outcome) stagedOutcome {
	return stagedOutcome{
		ID: id, Status: string(o.Status), ExitCode: o.ExitCode, Stdout: o.Stdout, Stderr: o.Stderr,
		Message: o.Message, Digest: string(o.Digest), Duration: o.Duration, Emitted: o.Emitted, Resumed: o.Resumed,
	}
}

func newExecutor(n *Node, run runner, slots int) *executor {
	e := &executor{n: n, run: run, slots: slots, queueCap: max(minQueue, queuePerSlot*slots), log: n.log}
	e.mu.cond = sync.NewCond(&e.mu)
	e.mu.execs = map[string]*execution{}
	e.mu.jobs = map[string]*execJob{}
	e.reports.new = func(coord string) *outbox[reportItem] {
		return &outbox[reportItem]{max: 1024, size: reportItem.size, bytes: reportBytes,
			spawn: n.spawn, send: func(b []reportItem) { e.sendReports(coord, b) }}
	}
	e.ckpts.new = func(home string) *outbox[ckptItem] {
		return &outbox[ckptItem]{max: 256, size: ckptItem.size, bytes: reportBytes,
			spawn: n.spawn, send: func(b []ckptItem) { e.sendCheckpoints(home, b) }}
	}
	return e
}

func (e *executor) start() {
	for range e.slots {
		e.n.spawn(e.slot)
	}
}

// close stops the slots and cancels running executions; Node.Close waits.
func (e *executor) close() {
	e.mu.Lock()
	e.mu.closed = true
	for _, x := range e.mu.execs {
		if x.cancel != nil {
			x.cancel()
		}
	}
	e.mu.cond.Broadcast()
	e.mu.Unlock()
}

// load is the number of executions running now, and the free slots.
func (e *executor) load() (running, free int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.running, max(e.slots-e.mu.running, 0)
}

// accept queues the executions that fit, in order, and says how many did.
func (e *executor) accept(ctx context.Context, from string, req *execReq) (execResp, error) {
	hdrs := make(map[string]jobHeader, len(req.Jobs))
	for _, h := range req.Jobs {
		hdrs[h.ID] = h
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return execResp{}, errClosing
	}
	n := 0
	for _, it := range req.Execs {
		if len(e.mu.queue) >= e.queueCap || e.mu.staged >= maxStagedBytes {
			break
		}
		n++
		if _, dup := e.mu.execs[it.ID]; dup {
			continue
		}
		j := e.mu.jobs[it.Job]
		if j == nil {
			h, ok := hdrs[it.Job]
			if !ok {
				continue // a malformed batch: the coordinator's deadline retries it
			}
			j = &execJob{hdr: h}
			e.mu.jobs[it.Job] = j
		}
		j.refs++
		x := &execution{id: it.ID, coord: from, coordInc: req.CoordInc, job: j, idx: it.Index, input: it.Input, resume: it.Resume, stage: stageQueued}
		e.mu.execs[it.ID] = x
		e.mu.queue = append(e.mu.queue, x)
	}
	if n > 0 {
		e.mu.cond.Broadcast()
	}
	return execResp{Accepted: n, Free: e.queueCap - len(e.mu.queue)}, nil
}

func (e *executor) slot() {
	for {
		e.mu.Lock()
		for len(e.mu.queue) == 0 && !e.mu.closed {
			e.mu.cond.Wait()
		}
		if e.mu.closed {
			e.mu.Unlock()
			return
		}
		x := e.mu.queue[0]
		e.mu.queue[0] = nil
		e.mu.queue = e.mu.queue[1:]
		ctx, cancel := context.WithCancel(e.n.ctx)
		x.stage, x.cancel = stageRunning, cancel
		e.mu.running++
		e.mu.Unlock()
		// Its coordinator learns from this node's inventory that it runs:
		// its deadline starts now.
		e.n.cluster.Inventory().Set(grid.Execution{ID: x.id, State: grid.ExecRunning})
		out := e.execute(ctx, x)
		cancel()
		e.finish(x, out)
	}
}

// execute prepares x's job if needed and runs x.
func (e *executor) execute(ctx context.Context, x *execution) plugins.Outcome {
	t, err := x.job.prepared(ctx, e)
	if err != nil {
		return plugins.Outcome{Status: plugins.StatusModuleNotFound, Message: err.Error()}
	}
	t.ItemID, t.Input = ItemID(x.job.hdr.ID, x.idx), x.input
	home := x.job.hdr.home(e.n.view())
	if x.resume {
		t.Checkpoint = e.fetchCheckpoint(ctx, x, home)
	}
	t.OnCheckpoint = func(sealed []byte) {
		e.ckpts.to(home).push(ckptItem{Job: x.job.hdr.ID, Index: x.idx, Sealed: sealed})
	}
	ctx, span := e.n.metrics.startExecute(ctx, x.job.hdr.ID, t.ItemID)
	out := e.run.Execute(ctx, t)
	e.n.metrics.endExecute(ctx, span, out)
	if out.CheckpointRefused != "" {
		e.log.Warn("refused the item's checkpoint; the execution ran from the beginning", "item", t.ItemID, "reason", out.CheckpointRefused)
	}
	return out
}

// prepared returns the job's task template, first fetching what its
// executions need: its module, by hash, and its files, from the job's
// home. One slot prepares; the others wait for it. A failure is not kept:
// the next execution tries again.
func (j *execJob) prepared(ctx context.Context, e *executor) (plugins.Task, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ok {
		return j.task, nil
	}
	spec := j.hdr.Spec
	h, err := plugins.ParseHash(spec.Module)
	if err != nil {
		return plugins.Task{}, fmt.Errorf("job %s names module %q: %v", j.hdr.ID, spec.Module, err)
	}
	if err := e.n.modules.ensure(ctx, h, j.hdr.home(e.n.view())); err != nil {
		return plugins.Task{}, err
	}
	lim, err := e.n.sandbox.Limits(PluginLimits(spec.Policy.Limits))
	if err != nil {
		lim, _ = e.n.sandbox.Limits(plugins.Limits{}) // this node allows less than the home: run within its maximums
	}
	filesDir := ""
	if j.hdr.Files {
		if filesDir, err = e.n.jobFiles(ctx, j.hdr); err != nil {
			return plugins.Task{}, err
		}
	}
	j.task = plugins.Task{
		Module: h, Name: spec.Name, Args: spec.Args, Env: spec.Env, FilesDir: filesDir,
		Limits: lim, Nondeterministic: spec.Policy.Nondeterministic,
	}
	j.ok = true
	return j.task, nil
}

// finish stages an outcome and reports it to the coordinator; an outcome
// that says nothing about the item (a crashed worker, a module that could
// not be fetched) is reported lost and discarded.
func (e *executor) finish(x *execution, out plugins.Outcome) {
	inv := e.n.cluster.Inventory()
	rep := execReport{ID: x.id, Status: string(out.Status), Digest: string(out.Digest), Message: out.Message}
	e.mu.Lock()
	e.mu.running--
	x.cancel = nil
	if x.dropped || e.mu.closed {
		e.forgetLocked(x)
		e.mu.Unlock()
		inv.Remove(x.id, time.Now())
		return
	}
	if out.Retriable() {
		rep.Lost = true
		e.forgetLocked(x)
		e.mu.Unlock()
		inv.Remove(x.id, time.Now())
	} else {
		x.stage, x.out, x.staged, x.input = stageStaged, out, time.Now(), nil
		e.mu.staged += x.bytes()
		if x.bytes() <= inlineOutcome {
			o := stagedOf(x.id, out)
			rep.Outcome = &o
		}
		e.mu.Unlock()
		inv.Set(grid.Execution{ID: x.id, State: grid.ExecFinished, Digest: digestBytes(out.Digest)})
	}
	e.reports.to(x.coord).push(reportItem{coordInc: x.coordInc, rep: rep})
}

// digestBytes is an outcome digest as inventories carry it: raw bytes.
func digestBytes(d plugins.Hash) []byte {
	b, err := hex.DecodeString(strings.TrimPrefix(string(d), "sha256:"))
	if err != nil {
		return []byte(d)
	}
	return b
}

// forgetLocked drops x from the executor's books.
func (e *executor) forgetLocked(x *execution) {
	if e.mu.execs[x.id] != x {
		return
	}
	delete(e.mu.execs, x.id)
	if x.stage == stageStaged {
		e.mu.staged -= x.bytes()
	}
	if x.job.refs--; x.job.refs <= 0 {
		delete(e.mu.jobs, x.job.hdr.ID)
	}
}

// sendReports delivers reports to their coordinator, retrying while it is
// alive at the incarnation that sent the executions.
func (e *executor) sendReports(coord string, batch []reportItem) {
	req := reportReq{From: e.n.id.NodeID, Inc: e.n.cluster.Self().Incarnation, Execs: make([]execReport, len(batch))}
	for i, r := range batch {
		req.Execs[i] = r.rep
	}
	for {
		req.Free = e.free()
		resp, err := callNode(e.n, coord, methodReport, e.n.coord.report, &req)
		if err == nil {
			if len(resp.Drop) > 0 {
				e.drop(context.Background(), coord, &dropReq{IDs: resp.Drop})
			}
			if len(resp.Execs) > 0 {
				e.acceptReplied(coord, &resp)
			}
			return
		}
		if !e.n.aliveAt(coord, batch[0].coordInc) || e.n.ctx.Err() != nil {
			ids := make([]string, len(batch))
			for i, r := range batch {
				ids[i] = r.rep.ID
			}
			e.drop(context.Background(), coord, &dropReq{IDs: ids})
			return
		}
		e.log.Debug("report to coordinator failed; retrying", "coordinator", coord, "reports", len(batch), "err", err)
		select {
		case <-time.After(reportRetryEvery):
		case <-e.n.ctx.Done():
		}
	}
}

// acceptReplied queues the executions a coordinator sent in its reply to
// a report. Those that no longer fit (other coordinators filled the queue
// meanwhile) go back as refused in the next report: they never ran.
func (e *executor) acceptReplied(coord string, resp *reportResp) {
	req := execReq{Coord: coord, CoordInc: resp.CoordInc, Jobs: resp.Jobs, Execs: resp.Execs}
	ok, err := e.accept(context.Background(), coord, &req)
	if err != nil {
		return // closing: the coordinator finds them lost with this node
	}
	out := e.reports.to(coord)
	for _, x := range resp.Execs[min(ok.Accepted, len(resp.Execs)):] {
		out.push(reportItem{coordInc: resp.CoordInc, rep: execReport{ID: x.ID, Refused: true}})
	}
}

// fetchCheckpoint asks for the checkpoint an execution resumes from: the
// job's home first, then its other holders, which were handed the same
// checkpoints (the home may just have died). Nil: none, or none reached;
// the execution then starts from the beginning.
func (e *executor) fetchCheckpoint(ctx context.Context, x *execution, home string) []byte {
	req := resumeReq{Job: x.job.hdr.ID, Index: x.idx}
	asked := []string{home}
	for _, h := range x.job.hdr.Holders {
		if !slices.Contains(asked, h) {
			asked = append(asked, h)
		}
	}
	v := e.n.view()
	var errs []error
	for _, h := range asked {
		if m, ok := v.Member(h); !ok || !m.Live() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := callNodeCtx(cctx, e.n, h, methodResume, e.n.sched.loadCheckpoint, &req)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h, err))
			continue
		}
		if resp.Sealed != nil {
			return resp.Sealed
		}
	}
	if len(errs) > 0 {
		e.log.Warn("could not fetch the checkpoint to resume from; the item starts from the beginning", "item", ItemID(x.job.hdr.ID, x.idx), "err", errors.Join(errs...))
	}
	return nil
}

// sendCheckpoints hands the newest checkpoint of each item in the batch to
// the job's home. A checkpoint that does not arrive costs only the work
// since the one before: it is not retried, the next one is sent.
func (e *executor) sendCheckpoints(home string, batch []ckptItem) {
	type key struct {
		job string
		idx uint64
	}
	newest := map[key]int{}
	for i, c := range batch {
		newest[key{c.Job, c.Index}] = i
	}
	req := ckptReq{Items: make([]ckptItem, 0, len(newest))}
	for i, c := range batch {
		if newest[key{c.Job, c.Index}] == i {
			req.Items = append(req.Items, c)
		}
	}
	if _, err := callNode(e.n, home, methodCkpt, e.n.sched.saveCheckpoints, &req); err != nil {
		e.log.Debug("could not hand checkpoints to their job's home", "home", home, "checkpoints", len(req.Items), "err", err)
	}
}

func (e *executor) free() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queueCap - len(e.mu.queue)
}

// take hands over staged outcomes, as many as fit one response, and
// forgets them: they are the canonical outcomes of their items.
func (e *executor) take(ctx context.Context, from string, req *takeReq) (takeResp, error) {
	inv := e.n.cluster.Inventory()
	var resp takeResp
	budget := takeBudget
	e.mu.Lock()
	var taken []string
	for _, id := range req.IDs {
		x := e.mu.execs[id]
		if x == nil || x.stage != stageStaged {
			resp.Outcomes = append(resp.Outcomes, stagedOutcome{ID: id, Missing: true})
			continue
		}
		if budget -= x.bytes(); budget < 0 && len(resp.Outcomes) > 0 {
			break
		}
		resp.Outcomes = append(resp.Outcomes, stagedOf(id, x.out))
		e.forgetLocked(x)
		taken = append(taken, id)
	}
	e.mu.Unlock()
	now := time.Now()
	for _, id := range taken {
		inv.Remove(id, now)
	}
	return resp, nil
}

// drop rolls executions back: queued ones never run, running ones are
// cancelled, staged outcomes are discarded, never applied.
func (e *executor) drop(ctx context.Context, from string, req *dropReq) (dropResp, error) {
	inv := e.n.cluster.Inventory()
	now := time.Now()
	e.mu.Lock()
	var gone []string
	for _, id := range req.IDs {
		x := e.mu.execs[id]
		if x == nil {
			continue
		}
		switch x.stage {
		case stageQueued:
			for i, q := range e.mu.queue {
				if q == x {
					e.mu.queue = append(e.mu.queue[:i], e.mu.queue[i+1:]...)
					break
				}
			}
			e.forgetLocked(x)
			gone = append(gone, id)
		case stageRunning:
			x.dropped = true
			if x.cancel != nil {
				x.cancel()
			}
		case stageStaged:
			e.forgetLocked(x)
			gone = append(gone, id)
		}
	}
	e.mu.Unlock()
	for _, id := range gone {
		inv.Remove(id, now)
	}
	return dropResp{}, nil
}

// collect drops the executions whose coordinator is gone (dead, departed,
// or restarted: a new incarnation knows nothing of them) and staged
// outcomes nobody came for. Called on view changes and periodically.
func (e *executor) collect(v grid.View, now time.Time) {
	e.mu.Lock()
	var ids []string
	for id, x := range e.mu.execs {
		m, ok := v.Member(x.coord)
		gone := !ok || m.State != grid.Alive || m.Incarnation != x.coordInc
		stale := x.stage == stageStaged && now.Sub(x.staged) > stagedTTL
		if gone || stale {
			ids = append(ids, id)
		}
	}
	e.mu.Unlock()
	if len(ids) > 0 {
		e.log.Info("rolling back executions whose coordinator is gone", "executions", len(ids))
		e.drop(context.Background(), "", &dropReq{IDs: ids})
	}
}

// entry is an execution as this node's inventory shows it (queued ones are
// not there: they do not run yet).
func (e *executor) entry(id string) (grid.Execution, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.mu.execs[id]
	if x == nil {
		return grid.Execution{}, false
	}
	switch x.stage {
	case stageRunning:
		return grid.Execution{ID: id, State: grid.ExecRunning}, true
	case stageStaged:
		return grid.Execution{ID: id, State: grid.ExecFinished, Digest: digestBytes(x.out.Digest)}, true
	}
	return grid.Execution{}, false
}
