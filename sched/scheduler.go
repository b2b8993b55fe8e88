package sched

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
)

// executor runs one task; *plugins.Sandbox is the real one.
type executor interface {
	Execute(ctx context.Context, t plugins.Task) plugins.Outcome
}

// ItemID is the placement key of a job's item: hash(job ID, index).
func ItemID(jobID string, idx uint64) string {
	h := sha256.New()
	h.Write([]byte(jobID))
	h.Write(binary.BigEndian.AppendUint64(nil, idx))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// job is the scheduler's in-memory state of one running job.
type job struct {
	rec      *jobRecord
	limits   plugins.Limits
	next     uint64            // the next index never dispatched
	done     []uint64          // bitset: items with a result
	retry    []uint64          // items to run again (a crashed worker)
	attempts map[uint64]int    // executions started per item, while it is open
	running  map[uint64]func() // cancel of each running execution
	changed  chan struct{}     // closed and replaced whenever results commit or the state changes
}

func (j *job) isDone(idx uint64) bool { return j.done[idx/64]&(1<<(idx%64)) != 0 }
func (j *job) setDone(idx uint64)     { j.done[idx/64] |= 1 << (idx % 64) }

func (j *job) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// task is one dispatched execution.
type task struct {
	j       *job
	rec     *jobRecord // the job's record when the task was taken: read-only
	idx     uint64
	attempt int
	ctx     context.Context
}

// Scheduler runs the items of the node's jobs on its executor slots and
// commits each outcome to the job's result log exactly once.
//
// One mutex guards the jobs; slot goroutines take tasks under it and hand
// outcomes to a single committer goroutine, which batches them into one
// durable transaction so that short items are not bound by fsync.
type Scheduler struct {
	store   *Store
	exec    executor
	nodeID  string
	slots   int
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// fence says whether this node may commit: nil, or why not (it lost
	// its quorum). Outcomes wait in memory meanwhile.
	fence func() error

	commits chan pendingResult
	wg      sync.WaitGroup
	ctx     context.Context
	stop    context.CancelFunc

	mu struct {
		sync.Mutex
		cond    *sync.Cond
		jobs    map[string]*job
		order   []*job // round robin over running jobs
		rr      int
		running int
		closed  bool
		// storageErr is the last failed commit, nil once one succeeds.
		storageErr error
	}
}

func newScheduler(store *Store, exec executor, nodeID string, slots int, log *slog.Logger, m *metrics) *Scheduler {
	s := &Scheduler{store: store, exec: exec, nodeID: nodeID, slots: slots, log: log, metrics: m, now: time.Now, fence: func() error { return nil }}
	s.mu.cond = sync.NewCond(&s.mu)
	s.mu.jobs = map[string]*job{}
	s.commits = make(chan pendingResult, 4*slots)
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s
}

// start launches the slot goroutines and the committer.
func (s *Scheduler) start() {
	s.wg.Add(1)
	go s.committer()
	for range s.slots {
		s.wg.Add(1)
		go s.slot()
	}
}

// close stops dispatching, cancels running executions and waits.
func (s *Scheduler) close() {
	s.mu.Lock()
	s.mu.closed = true
	for _, j := range s.mu.jobs {
		for _, cancel := range j.running {
			cancel()
		}
	}
	s.mu.cond.Broadcast()
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

// add registers a running job; items that already have results are skipped.
func (s *Scheduler) add(rec *jobRecord, limits plugins.Limits) error {
	j := &job{
		rec: rec, limits: limits,
		done:     make([]uint64, (rec.Items+63)/64),
		attempts: map[uint64]int{},
		running:  map[uint64]func(){},
		changed:  make(chan struct{}),
	}
	if rec.Results > 0 {
		if err := s.store.DoneItems(rec.ID, j.setDone); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.jobs[rec.ID] = j
	if rec.State == api.JobRunning {
		s.mu.order = append(s.mu.order, j)
		s.mu.cond.Broadcast()
	}
	return nil
}

// nextTaskLocked picks the next item to run, round robin over jobs so that
// one large job does not starve a small one.
func (s *Scheduler) nextTaskLocked() (task, bool) {
	for range len(s.mu.order) {
		s.mu.rr = (s.mu.rr + 1) % len(s.mu.order)
		j := s.mu.order[s.mu.rr]
		idx, ok := j.takeLocked()
		if !ok {
			continue
		}
		j.attempts[idx]++
		ctx, cancel := context.WithCancel(s.ctx)
		j.running[idx] = cancel
		s.mu.running++
		return task{j: j, rec: j.rec, idx: idx, attempt: j.attempts[idx], ctx: ctx}, true
	}
	return task{}, false
}

func (j *job) takeLocked() (uint64, bool) {
	for len(j.retry) > 0 {
		idx := j.retry[0]
		j.retry = j.retry[1:]
		if !j.isDone(idx) {
			return idx, true
		}
	}
	for j.next < j.rec.Items {
		idx := j.next
		j.next++
		if !j.isDone(idx) {
			return idx, true
		}
	}
	return 0, false
}

func (s *Scheduler) slot() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		var t task
		for {
			if s.mu.closed {
				s.mu.Unlock()
				return
			}
			var ok bool
			if t, ok = s.nextTaskLocked(); ok {
				break
			}
			s.mu.cond.Wait()
		}
		s.mu.Unlock()
		s.run(t)
	}
}

func (s *Scheduler) run(t task) {
	rec := t.rec // records are replaced under s.mu, never changed in place
	itemID := ItemID(rec.ID, t.idx)
	input, err := s.store.Input(rec.ID, t.idx)
	var out plugins.Outcome
	if err != nil {
		out = plugins.Outcome{Status: plugins.StatusCrashed, Message: "read item input: " + err.Error()}
	} else {
		ctx, span := s.metrics.startExecute(t.ctx, rec.ID, itemID)
		out = s.exec.Execute(ctx, plugins.Task{
			Module: plugins.Hash(rec.Spec.Module), ItemID: itemID, Name: rec.Spec.Name,
			Input: input, Args: rec.Spec.Args, Env: rec.Spec.Env, FilesDir: rec.FilesDir,
			Limits: t.j.limits, Nondeterministic: rec.Spec.Policy.Nondeterministic,
		})
		s.metrics.endExecute(ctx, span, out)
	}

	// An execution stopped by us (cancel, shutdown) has no outcome worth
	// keeping; one that failed for a reason not the module's (a crashed
	// worker, a module missing locally) runs again while attempts remain.
	stopped := t.ctx.Err() != nil
	s.mu.Lock()
	cancel := t.j.running[t.idx]
	delete(t.j.running, t.idx)
	s.mu.running--
	if cancel != nil {
		cancel()
	}
	wanted := t.j.rec.State == api.JobRunning && !t.j.isDone(t.idx) && !stopped
	retry := wanted && out.Retriable() && t.attempt < attemptsOf(rec.Spec.Policy)
	if retry {
		s.log.Warn("execution failed for a reason not the module's; running the item again",
			"job", rec.ID, "item", t.idx, "attempt", t.attempt, "status", out.Status, "message", out.Message)
		t.j.retry = append(t.j.retry, t.idx)
		s.mu.cond.Broadcast()
	}
	s.mu.Unlock()
	if !wanted || retry {
		return
	}
	if out.Retriable() {
		out.Message = fmt.Sprintf("%s (gave up after %d attempts)", out.Message, t.attempt)
	}
	r := pendingResult{jobID: rec.ID, res: api.Result{
		Index: t.idx, ItemID: itemID, Status: string(out.Status), ExitCode: out.ExitCode,
		Output: out.Stdout, Log: out.Stderr, Message: out.Message, Digest: string(out.Digest),
		Node: s.nodeID, Duration: out.Duration, Attempts: t.attempt,
	}}
	select {
	case s.commits <- r:
	case <-s.ctx.Done():
		// Shutting down: the committer is gone. The outcome was never
		// acknowledged; the item runs again after the restart.
	}
}

func attemptsOf(p api.Policy) int {
	if p.Attempts <= 0 {
		return 3
	}
	return p.Attempts
}

// committer batches outcomes into durable transactions. A failed write
// (disk full, fsync error) is retried with backoff: the outcomes stay in
// memory, nothing is acknowledged, and the node says why in its log.
func (s *Scheduler) committer() {
	defer s.wg.Done()
	var batch []pendingResult
	backoff := 10 * time.Millisecond
	for {
		if len(batch) == 0 {
			select {
			case r := <-s.commits:
				batch = append(batch, r)
			case <-s.ctx.Done():
				return
			}
		}
	drain:
		for len(batch) < 512 {
			select {
			case r := <-s.commits:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		// While executions are running, more outcomes are on their way:
		// wait a moment to commit them together. Every transaction costs a
		// page write and an fsync, and at one result per transaction the
		// commits take a third of a core with millisecond items. An idle
		// node commits at once, so a lone item's latency does not grow.
		if len(batch) < commitLingerBatch && s.load() > 0 {
			linger := time.NewTimer(commitLinger)
		wait:
			for len(batch) < commitLingerBatch {
				select {
				case r := <-s.commits:
					batch = append(batch, r)
				case <-linger.C:
					break wait
				case <-s.ctx.Done():
					break wait
				}
			}
			linger.Stop()
		}
		batch = s.dropDuplicates(batch)
		if len(batch) == 0 {
			continue
		}
		if err := s.fence(); err != nil {
			// Cut off from the monitors' majority: hold the outcomes until
			// the view is renewed; they are committed then, or not at all.
			s.log.Warn("holding results: this node may not commit", "results", len(batch), "err", err)
			if !s.waitFence() {
				return
			}
		}
		recs, err := s.store.Commit(batch)
		if err != nil {
			s.log.Error("cannot commit results; holding them and retrying", "results", len(batch), "err", err)
			s.metrics.storageErrors.Add(s.ctx, 1)
			s.mu.Lock()
			s.mu.storageErr = err
			s.mu.Unlock()
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		s.applyCommitted(batch, recs)
		batch = batch[:0]
	}
}

// waitFence waits until the fence lets commits through; false when the
// scheduler closes first.
func (s *Scheduler) waitFence() bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.fence() != nil {
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return false
		}
	}
	return true
}

// dropDuplicates keeps the first outcome of each item that has no result
// yet. The committer is the only writer of results and marks items done
// right after each commit, so this is what makes a commit exactly-once.
func (s *Scheduler) dropDuplicates(batch []pendingResult) []pendingResult {
	type key struct {
		job string
		idx uint64
	}
	seen := make(map[key]bool, len(batch))
	out := batch[:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range batch {
		k := key{r.jobID, r.res.Index}
		if j := s.mu.jobs[r.jobID]; j == nil || seen[k] || j.isDone(r.res.Index) {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

// applyCommitted updates the in-memory jobs after a durable commit and
// finishes jobs whose every item has a result.
func (s *Scheduler) applyCommitted(batch []pendingResult, recs map[string]*jobRecord) {
	var finished []*job
	s.mu.Lock()
	s.mu.storageErr = nil
	for _, r := range batch {
		if j := s.mu.jobs[r.jobID]; j != nil && r.committed {
			j.setDone(r.res.Index)
			delete(j.attempts, r.res.Index)
		}
	}
	for id, rec := range recs {
		j := s.mu.jobs[id]
		if j == nil {
			continue
		}
		if j.rec.State != api.JobRunning { // a cancel raced the commit
			rec.State, rec.Finished, rec.ExpiresAt = j.rec.State, j.rec.Finished, j.rec.ExpiresAt
		}
		j.rec = rec
		if rec.State == api.JobRunning && rec.Results == rec.Items {
			finished = append(finished, j)
		}
		j.notifyLocked()
	}
	s.mu.Unlock()
	for _, j := range finished {
		s.finish(j, api.JobDone)
	}
}

// finish moves a job to a final state, durably, and wakes its followers.
func (s *Scheduler) finish(j *job, state string) error {
	now := s.now().UTC()
	s.mu.Lock()
	id, ttl := j.rec.ID, j.rec.Spec.Policy.ResultTTL
	s.mu.Unlock()
	if ttl <= 0 {
		ttl = DefaultResultTTL
	}
	if err := s.store.SetState(id, state, now, now.Add(ttl)); err != nil {
		if errors.Is(err, errConflict) {
			return nil // already finished
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.rec.State != api.JobRunning {
		return nil
	}
	rec := *j.rec
	rec.State, rec.Finished, rec.ExpiresAt = state, now, now.Add(ttl)
	j.rec = &rec
	for _, cancel := range j.running {
		cancel()
	}
	for i, o := range s.mu.order {
		if o == j {
			s.mu.order = append(s.mu.order[:i], s.mu.order[i+1:]...)
			break
		}
	}
	j.notifyLocked()
	s.metrics.jobsFinished(state)
	return nil
}

// The committer waits up to commitLinger for up to commitLingerBatch
// outcomes while executions are running.
const (
	commitLinger      = 2 * time.Millisecond
	commitLingerBatch = 64
)

// DefaultResultTTL is how long results stay readable after their job ends.
const DefaultResultTTL = 72 * time.Hour

// cancel stops a running job: no new executions, running ones cancelled,
// their outcomes discarded. Results already committed stay readable.
func (s *Scheduler) cancel(jobID string) error {
	s.mu.Lock()
	j := s.mu.jobs[jobID]
	s.mu.Unlock()
	if j == nil {
		return ErrNotFound
	}
	return s.finish(j, api.JobCancelled)
}

// status is a job's current status, and a channel closed on its next change.
func (s *Scheduler) status(jobID string) (api.JobStatus, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.mu.jobs[jobID]
	if j == nil {
		return api.JobStatus{}, nil, false
	}
	st := j.rec.status()
	if st.State == api.JobRunning {
		st.Running = uint64(len(j.running))
		st.Pending -= min(st.Pending, st.Running)
	}
	return st, j.changed, true
}

// statuses lists every job the scheduler holds.
func (s *Scheduler) statuses() []api.JobStatus {
	s.mu.Lock()
	ids := make([]string, 0, len(s.mu.jobs))
	for id := range s.mu.jobs {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	out := make([]api.JobStatus, 0, len(ids))
	for _, id := range ids {
		if st, _, ok := s.status(id); ok {
			out = append(out, st)
		}
	}
	return out
}

// load returns the number of executions running now.
func (s *Scheduler) load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.running
}

// expire forgets jobs whose results have outlived their TTL.
func (s *Scheduler) expire(now time.Time) []*jobRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []*jobRecord
	for id, j := range s.mu.jobs {
		if j.rec.State != api.JobRunning && !j.rec.ExpiresAt.IsZero() && now.After(j.rec.ExpiresAt) {
			gone = append(gone, j.rec)
			delete(s.mu.jobs, id)
			j.notifyLocked()
		}
	}
	return gone
}

// storageErr is the last failed commit, or nil.
func (s *Scheduler) storageErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.storageErr
}
