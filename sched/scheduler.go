package sched

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/sdk/api"
)

// ItemID is the placement key of a job's item: hash(job ID, index).
func ItemID(jobID string, idx uint64) string {
	h := sha256.New()
	h.Write([]byte(jobID))
	h.Write(binary.BigEndian.AppendUint64(nil, idx))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Home windows: how much of one job is out with its coordinators at once.
// Coordinators hold assigned items in memory; the rest wait in the home's
// store.
const (
	assignWindowItems = 16384
	assignWindowBytes = 64 << 20
	assignEvery       = 500 * time.Millisecond
)

// job is the home's in-memory state of one job it accepted.
type job struct {
	rec      *jobRecord
	done     []uint64 // bitset: items with a result
	next     uint64   // the next index never assigned
	retry    []uint64 // items to assign again (their coordinator went away)
	assigned map[uint64]assignment
	outBytes int
	changed  chan struct{} // closed and replaced whenever results commit or the state changes
}

// assignment is where an item is coordinated.
type assignment struct {
	coord string
	inc   uint64
	size  int
}

func (j *job) isDone(idx uint64) bool {
	return idx < uint64(len(j.done))*64 && j.done[idx/64]&(1<<(idx%64)) != 0
}

func (j *job) setDone(idx uint64) {
	for uint64(len(j.done))*64 <= idx {
		j.done = append(j.done, 0)
	}
	j.done[idx/64] |= 1 << (idx % 64)
}

func (j *job) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// Scheduler is a node's side of the jobs it accepted (their home): it
// keeps their records, assigns their items to the coordinators placement
// names, and appends the coordinators' decisions to each job's result log
// exactly once.
//
// One mutex guards the jobs; a single committer goroutine batches results
// into one durable transaction, so that short items are not bound by
// fsync.
type Scheduler struct {
	n       *Node
	store   *Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// fence says whether this node may commit: nil, or why not (it lost
	// its quorum). Results wait in memory meanwhile.
	fence func() error

	commits chan pendingResult
	wake    chan struct{}
	assigns outboxes[assignEntry]
	ckptFwd outboxes[ckptItem] // per holder: checkpoints handed on
	wg      sync.WaitGroup
	ctx     context.Context
	stop    context.CancelFunc

	mu struct {
		sync.Mutex
		jobs   map[string]*job
		closed bool
		// storageErr is the last failed commit, nil once one succeeds.
		storageErr error
	}
}

// assignEntry is one item on its way to its coordinator.
type assignEntry struct {
	hdr  jobHeader
	item assignItem
}

func newScheduler(n *Node, store *Store, log *slog.Logger, m *metrics) *Scheduler {
	s := &Scheduler{n: n, store: store, log: log, metrics: m, now: time.Now, fence: func() error { return nil }}
	s.mu.jobs = map[string]*job{}
	s.commits = make(chan pendingResult, 4096)
	s.wake = make(chan struct{}, 1)
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.assigns.new = func(coord string) *outbox[assignEntry] {
		return &outbox[assignEntry]{max: 1024, size: func(e assignEntry) int { return len(e.item.Input) + 64 }, bytes: 4 << 20,
			spawn: n.spawn, send: func(b []assignEntry) { s.sendAssigns(coord, b) }}
	}
	s.ckptFwd.new = func(holder string) *outbox[ckptItem] {
		return &outbox[ckptItem]{max: 256, size: ckptItem.size, bytes: reportBytes,
			spawn: n.spawn, send: func(b []ckptItem) { s.sendHeldCheckpoints(holder, b) }}
	}
	return s
}

// start launches the committer and the assigner.
func (s *Scheduler) start() {
	s.wg.Add(2)
	go s.committer()
	go s.assigner()
}

// close stops committing and assigning, and waits.
func (s *Scheduler) close() {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

func (s *Scheduler) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// add registers a job; items that already have results are skipped.
func (s *Scheduler) add(rec *jobRecord) error {
	j := &job{rec: rec, done: make([]uint64, (rec.Items+63)/64), assigned: map[uint64]assignment{}, changed: make(chan struct{})}
	if rec.Results > 0 {
		if err := s.store.DoneItems(rec.ID, j.setDone); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if old := s.mu.jobs[rec.ID]; old != nil {
		old.notifyLocked() // its followers read the new one
	}
	s.mu.jobs[rec.ID] = j
	s.mu.Unlock()
	s.kick()
	if rec.State == api.JobRunning && rec.Results >= rec.Items {
		// Every item has its result; the home before did not get to say so.
		return s.finish(j, api.JobDone)
	}
	return nil
}

// serves reports whether this node is serving the job as its home.
func (s *Scheduler) serves(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.jobs[jobID] != nil
}

// release stops serving a job: another node is its home now. Its results
// on their way here are sent to that home again (commitMoved).
func (s *Scheduler) release(jobID, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.mu.jobs[jobID]; j != nil {
		j.notifyLocked() // its followers find it gone; its checkpoints stay with this holder
		delete(s.mu.jobs, jobID)
		s.log.Info("no longer the home of a job", "job", jobID, "why", why)
	}
}

// setHolders records a job's grown list of holders.
func (s *Scheduler) setHolders(jobID string, holders []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.mu.jobs[jobID]; j != nil && len(holders) > len(j.rec.Holders) {
		rec := *j.rec
		rec.Holders = holders
		j.rec = &rec
	}
}

// yield stops serving a job for which a holder heard of a home at a newer
// term than this node's.
func (s *Scheduler) yield(jobID string, term uint64) {
	s.mu.Lock()
	j := s.mu.jobs[jobID]
	newer := j != nil && term > j.rec.Term
	s.mu.Unlock()
	if newer {
		s.release(jobID, fmt.Sprintf("a home at term %d took it over", term))
	}
}

// assigner hands the items of running jobs to their coordinators: the
// primary of each item's bucket under the current view. An item stays with
// its coordinator until it commits or the coordinator leaves the view (or
// restarts); only then does it move, so a join moves nothing in flight.
func (s *Scheduler) assigner() {
	defer s.wg.Done()
	t := time.NewTicker(assignEvery)
	defer t.Stop()
	v, changed := s.n.cluster.View()
	own := v.Ownership(1)
	for {
		s.assignRound(v, own)
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		case <-changed:
			v, changed = s.n.cluster.View()
			own = v.Ownership(1)
			s.reclaim(v)
		}
	}
}

// reclaim takes back the items of coordinators that are no longer alive
// at the incarnation they were assigned to.
func (s *Scheduler) reclaim(v grid.View) {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := 0
	for _, j := range s.mu.jobs {
		for idx, a := range j.assigned {
			if m, ok := v.Member(a.coord); !ok || m.State != grid.Alive || m.Incarnation != a.inc {
				delete(j.assigned, idx)
				j.outBytes -= a.size
				j.retry = append(j.retry, idx)
				moved++
			}
		}
	}
	if moved > 0 {
		s.log.Info("items move to new coordinators", "items", moved, "epoch", v.Epoch)
		s.n.metrics.movedItems.Add(context.Background(), int64(moved))
		s.n.metrics.nMoved.Add(uint64(moved))
	}
}

// assignRound assigns what the windows allow.
func (s *Scheduler) assignRound(v grid.View, own *grid.Ownership) {
	type pick struct {
		j   *job
		idx []uint64
	}
	var picks []pick
	s.mu.Lock()
	for _, j := range s.mu.jobs {
		if j.rec.State != api.JobRunning {
			continue
		}
		var idx []uint64
		room := assignWindowItems - len(j.assigned)
		for room > 0 && j.outBytes < assignWindowBytes {
			var i uint64
			if len(j.retry) > 0 {
				i, j.retry = j.retry[0], j.retry[1:]
			} else if j.next < j.rec.Items {
				i = j.next
				j.next++
			} else {
				break
			}
			if j.isDone(i) {
				continue
			}
			if _, ok := j.assigned[i]; ok {
				continue
			}
			idx = append(idx, i)
			room--
		}
		if len(idx) > 0 {
			picks = append(picks, pick{j, idx})
		}
	}
	s.mu.Unlock()
	for _, p := range picks {
		hdr := headerOf(p.j.rec, s.n.id.NodeID)
		inputs, err := s.store.Inputs(hdr.ID, p.idx)
		s.mu.Lock()
		if err != nil {
			s.log.Error("cannot read item inputs; trying again", "job", hdr.ID, "err", err)
			p.j.retry = append(p.j.retry, p.idx...)
			s.mu.Unlock()
			continue
		}
		var out []func()
		for k, i := range p.idx {
			coord := own.Primary(grid.BucketOf([]byte(ItemID(hdr.ID, i))))
			m, ok := v.Member(coord)
			if !ok || !m.Live() {
				p.j.retry = append(p.j.retry, i)
				continue
			}
			a := assignment{coord: coord, inc: m.Incarnation, size: len(inputs[k])}
			p.j.assigned[i] = a
			p.j.outBytes += a.size
			e := assignEntry{hdr: hdr, item: assignItem{Job: hdr.ID, Index: i, Input: inputs[k], Resume: s.store.Checkpoint(hdr.ID, i) != nil}}
			out = append(out, func() { s.assigns.to(coord).push(e) })
		}
		s.mu.Unlock()
		for _, f := range out {
			f()
		}
	}
}

// sendAssigns delivers assignments; those that fail go back to be
// assigned again.
func (s *Scheduler) sendAssigns(coord string, batch []assignEntry) {
	req := assignReq{Items: make([]assignItem, len(batch))}
	seen := map[string]bool{}
	for i, e := range batch {
		req.Items[i] = e.item
		if !seen[e.hdr.ID] {
			seen[e.hdr.ID] = true
			req.Jobs = append(req.Jobs, e.hdr)
		}
	}
	if _, err := callNode(s.n, coord, methodAssign, s.n.coord.assign, &req); err != nil {
		s.log.Debug("could not assign items; assigning them again", "coordinator", coord, "items", len(batch), "err", err)
		s.mu.Lock()
		for _, e := range batch {
			j := s.mu.jobs[e.item.Job]
			if j == nil {
				continue
			}
			if a, ok := j.assigned[e.item.Index]; ok && a.coord == coord {
				delete(j.assigned, e.item.Index)
				j.outBytes -= a.size
				j.retry = append(j.retry, e.item.Index)
			}
		}
		s.mu.Unlock()
		select {
		case <-time.After(assignEvery):
		case <-s.ctx.Done():
		}
		s.kick()
	}
}

// commit takes decided items from a coordinator and answers once they are
// durable in their jobs' result logs (or known to be duplicates).
func (s *Scheduler) commit(ctx context.Context, from string, req *commitReq) (commitResp, error) {
	replies := make(chan commitReply, len(req.Items))
	for i, it := range req.Items {
		r := pendingResult{jobID: it.Job, res: it.Result, emitted: it.Emitted, slot: i, reply: replies}
		r.res.Seq = 0
		select {
		case s.commits <- r:
		case <-ctx.Done():
			return commitResp{}, ctx.Err()
		case <-s.ctx.Done():
			return commitResp{}, errClosing
		}
	}
	resp := commitResp{Status: make([]uint8, len(req.Items))}
	for range req.Items {
		select {
		case r := <-replies:
			resp.Status[r.slot] = r.status
		case <-ctx.Done():
			return commitResp{}, ctx.Err()
		case <-s.ctx.Done():
			return commitResp{}, errClosing
		}
	}
	return resp, nil
}

// commitReply is the committer's word on one result.
type commitReply struct {
	slot   int
	status uint8
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
		// While more items are out than this batch holds, more results are
		// on their way: wait a moment to commit them together. Every transaction costs a
		// page write and an fsync, and at one result per transaction the
		// commits take a third of a core with millisecond items. An idle
		// node commits at once, so a lone item's latency does not grow.
		if len(batch) < commitLingerBatch && s.inFlight() > len(batch) {
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
		s.replicateCommitted(batch, recs)
		s.applyCommitted(batch, recs)
		batch = batch[:0]
	}
}

// replicateCommitted sends each job's share of a committed batch to the
// job's other holders and returns once a majority of them has it: only
// then are the results acknowledged. While too few holders answer it
// retries, holding the batch; a job this node is no longer the home of
// (a holder follows a newer home) is released, and its results answered
// as moved, to be sent to the new home.
func (s *Scheduler) replicateCommitted(batch []pendingResult, recs map[string]*jobRecord) {
	type share struct {
		req  appendReq
		rec  *jobRecord
		rows []int
	}
	shares := map[string]*share{}
	for i, r := range batch {
		if !r.committed {
			continue
		}
		sh := shares[r.jobID]
		if sh == nil {
			rec := recs[r.jobID]
			if len(holdersOf(rec)) < 2 {
				continue
			}
			sh = &share{rec: rec, req: appendReq{Rec: rec.wire(), FirstSeq: r.res.Seq, InFirst: rec.Items}}
			shares[r.jobID] = sh
		}
		sh.req.Results = append(sh.req.Results, r.res)
		sh.rows = append(sh.rows, i)
		if len(r.emitted) > 0 {
			sh.req.Inputs = append(sh.req.Inputs, r.emitted...)
		}
	}
	for id, sh := range shares {
		sh.req.InFirst = sh.rec.Items - uint64(len(sh.req.Inputs))
		backoff := 50 * time.Millisecond
		for {
			if h := s.n.ledger.holders(id); len(h) > len(sh.rec.Holders) {
				// The job gained a holder meanwhile (it lost one for good).
				rec := *sh.rec
				rec.Holders = h
				sh.rec, sh.req.Rec.Holders = &rec, h
			}
			err := s.n.replicate(sh.rec, &sh.req)
			if err == nil {
				break
			}
			if errors.Is(err, errStale) || actingHome(s.n.view(), holdersOf(sh.rec)) != s.n.id.NodeID || s.ctx.Err() != nil {
				s.release(id, "its results could not be stored as its home's: "+err.Error())
				for _, i := range sh.rows {
					batch[i].committed = false
					batch[i].answer(commitMoved)
					batch[i].reply = nil
				}
				break
			}
			s.log.Warn("holding results: too few of the job's holders stored them; retrying", "job", id, "results", len(sh.rows), "err", err)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
		}
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
		j := s.mu.jobs[r.jobID]
		switch {
		case j == nil && s.n.ledger.holders(r.jobID) != nil:
			r.answer(commitMoved)
		case j == nil || j.rec.State != api.JobRunning || r.res.Index >= j.rec.Items:
			r.answer(commitGone)
		case seen[k] || j.isDone(r.res.Index):
			r.answer(commitDuplicate)
		default:
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}

// applyCommitted updates the in-memory jobs after a durable commit, answers
// the coordinators, and finishes jobs whose every item has a result.
func (s *Scheduler) applyCommitted(batch []pendingResult, recs map[string]*jobRecord) {
	var finished []*job
	s.mu.Lock()
	s.mu.storageErr = nil
	for _, r := range batch {
		j := s.mu.jobs[r.jobID]
		if j != nil && r.committed {
			j.setDone(r.res.Index)
			if a, ok := j.assigned[r.res.Index]; ok {
				delete(j.assigned, r.res.Index)
				j.outBytes -= a.size
			}
			r.answer(commitDone)
		} else if j != nil && j.rec.State == api.JobRunning {
			r.answer(commitMoved) // this copy follows a newer home now
		} else {
			r.answer(commitGone)
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
	s.kick()
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
	rec := *j.rec
	s.mu.Unlock()
	rec.State, rec.Finished, rec.ExpiresAt = state, now, now.Add(ttl)
	// The other holders learn the state too; a cancel is acknowledged only
	// once a majority has it. A done that does not reach them is found
	// again by a new home (every item has its result).
	req := appendReq{Rec: rec.wire(), FirstSeq: rec.Results + 1, InFirst: rec.Items}
	if err := s.n.replicate(&rec, &req); err != nil {
		if state == api.JobCancelled {
			return fmt.Errorf("the cancel is recorded here but not yet by a majority of the job's holders: %w", err)
		}
		s.log.Warn("the job's holders did not all learn it is done; a new home will find it so", "job", id, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.rec.State != api.JobRunning {
		return nil
	}
	j.rec = &rec
	coords := map[string]bool{}
	for _, a := range j.assigned {
		coords[a.coord] = true
	}
	j.assigned, j.retry, j.outBytes = map[uint64]assignment{}, nil, 0
	j.notifyLocked()
	s.metrics.jobsFinished(state)
	if state == api.JobCancelled {
		for c := range coords {
			s.n.spawn(func() {
				if _, err := callNode(s.n, c, methodItems, s.n.coord.items, &itemsReq{Job: id, Cancel: true}); err != nil {
					s.log.Debug("could not tell a coordinator of a cancel; its executions are rolled back when they report", "coordinator", c, "err", err)
				}
			})
		}
	}
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
		if un := st.Pending - min(st.Pending, uint64(len(j.assigned))); un > 0 {
			st.Waiting = map[string]uint64{api.WaitAssign: un}
		}
	}
	return st, j.changed, true
}

// served lists the jobs this node is the home of.
func (s *Scheduler) served() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.mu.jobs))
	for id := range s.mu.jobs {
		ids = append(ids, id)
	}
	return ids
}

// statuses lists every job the scheduler holds.
func (s *Scheduler) statuses() []api.JobStatus {
	ids := s.served()
	out := make([]api.JobStatus, 0, len(ids))
	for _, id := range ids {
		if st, _, ok := s.status(id); ok {
			out = append(out, st)
		}
	}
	return out
}

// inFlight counts the items out with coordinators: the results on their
// way, those in the committer's hands included.
func (s *Scheduler) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.mu.jobs {
		n += len(j.assigned)
	}
	return n
}

// coordinators lists the nodes coordinating a job's items now.
func (s *Scheduler) coordinators(jobID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.mu.jobs[jobID]
	if j == nil {
		return nil
	}
	set := map[string]bool{}
	for _, a := range j.assigned {
		set[a.coord] = true
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
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
