package sched

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// The node's part in the job ledger (ledger.go): as a holder it stores
// the home's writes and answers a new home's gather; as a home it sends
// its writes to the other holders and waits for a majority; and it takes
// over the jobs whose home it becomes.

var (
	// errStale: a holder follows a newer home; this node is not the
	// job's home any more.
	errStale = errors.New("sched: a newer home took the job over")
	// errNoMajority: too few holders stored a write for it to count.
	errNoMajority = errors.New("sched: too few of the job's holders stored the write")
	// errNoCandidate: no member can take a copy of a job that lost a holder.
	errNoCandidate = errors.New("sched: no member on another host can take a copy")
)

// holdChunk bounds the inputs or results of one ledger message, well
// under the transport's frame cap.
const holdChunk = 4 << 20

// ledger is what the node knows of the jobs it holds a copy of.
type ledger struct {
	mu      sync.Mutex
	held    map[string][]string // job → its holders, for every copy in the store
	taking  map[string]bool     // takeovers under way
	known   map[string][]string // holders of jobs held elsewhere, as asked
	growing map[string]bool     // jobs being copied to one more holder
	// deadSince is when this node first saw each member dead (or gone
	// from the view): a holder is replaced once it has been dead for
	// holderGrace, so that a node restarted at once costs no copies.
	deadSince map[string]time.Time
	grace     time.Duration  // holderGrace; tests shorten it
	acked     map[string]int // jobs served here: the list length of the last write a majority acknowledged
}

// holderGrace is how long a dead holder may come back before its jobs are
// copied to another member. A holder that left is replaced at once.
const holderGrace = 30 * time.Second

func (l *ledger) init() {
	l.held, l.taking, l.known = map[string][]string{}, map[string]bool{}, map[string][]string{}
	l.growing, l.deadSince, l.grace = map[string]bool{}, map[string]time.Time{}, holderGrace
	l.acked = map[string]int{}
}

// count says how many of a job's holders are present (alive, or dead for
// less than the grace: they may well come back) and how many are gone
// (left, or dead for longer).
func (l *ledger) count(v grid.View, holders []string, now time.Time) (present, gone int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range holders {
		m, ok := v.Member(h)
		switch {
		case ok && m.Live():
			delete(l.deadSince, h)
			present++
		case ok && m.State == grid.Left:
			gone++
		default:
			since, seen := l.deadSince[h]
			if !seen {
				l.deadSince[h] = now
				since = now
			}
			if now.Sub(since) < l.grace {
				present++
			} else {
				gone++
			}
		}
	}
	return present, gone
}

func (l *ledger) hold(jobID string, holders []string) {
	l.mu.Lock()
	l.held[jobID] = holders
	l.mu.Unlock()
}

// settle records that a write of this node's, as the job's home, was
// acknowledged under a list of n holders; settled asks whether one was.
func (l *ledger) settle(jobID string, n int) {
	l.mu.Lock()
	l.acked[jobID] = max(l.acked[jobID], n) // lists only grow; a write under a shorter one may land late
	l.mu.Unlock()
}

func (l *ledger) settled(jobID string, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[jobID] == n
}

// unsettle: this node just became the job's home; no write of its term
// was acknowledged yet.
func (l *ledger) unsettle(jobID string) {
	l.mu.Lock()
	delete(l.acked, jobID)
	l.mu.Unlock()
}

func (l *ledger) forget(jobID string) {
	l.mu.Lock()
	delete(l.held, jobID)
	delete(l.acked, jobID)
	l.mu.Unlock()
}

func (l *ledger) holders(jobID string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[jobID]; ok {
		return h
	}
	return l.known[jobID]
}

// holdersOf returns a record's holders: a job stored before the ledger
// existed is held by the node that accepted it alone.
func holdersOf(rec *jobRecord) []string {
	if len(rec.Holders) > 0 {
		return rec.Holders
	}
	return []string{homeOf(rec.ID)}
}

// --- holder side ---

func (n *Node) holdPut(ctx context.Context, from string, req *putReq) (putResp, error) {
	if req.Abort {
		if rec, err := n.store.Job(req.Rec.ID); err == nil && rec.Term == req.Rec.Term && !n.sched.serves(rec.ID) {
			n.dropJob(rec)
		}
		return putResp{}, nil
	}
	dir := ""
	if req.Rec.FilesDir != "" {
		dir = filepath.Join(n.dataDir, "jobs", req.Rec.ID, "files")
		if req.First == 0 {
			os.RemoveAll(dir)
			if err := writeJobFiles(dir, req.Files); err != nil {
				return putResp{}, fmt.Errorf("%w: write the files of job %s: %v", ErrStorage, req.Rec.ID, err)
			}
		}
	}
	stale, err := n.store.HolderPut(&req.Rec, req.First, req.Inputs, req.Complete, dir)
	if err != nil || stale {
		return putResp{Stale: stale}, err
	}
	if req.Complete {
		n.ledger.hold(req.Rec.ID, req.Rec.Holders)
	}
	return putResp{}, nil
}

func (n *Node) holdAppend(ctx context.Context, from string, req *appendReq) (appendResp, error) {
	if from != n.id.NodeID {
		n.sched.yield(req.Rec.ID, req.Rec.Term)
	}
	resp, err := n.store.HolderAppend(req)
	if err == nil && !resp.Stale && !resp.Missing {
		if len(req.Rec.Holders) > len(n.ledger.holders(req.Rec.ID)) {
			n.ledger.hold(req.Rec.ID, req.Rec.Holders)
		}
	}
	return resp, err
}

func (n *Node) holdGather(ctx context.Context, from string, req *gatherReq) (gatherResp, error) {
	if from != n.id.NodeID {
		n.sched.yield(req.Job, req.Term)
	}
	rec, err := n.store.Promise(req.Job, req.Term)
	if err != nil || rec == nil {
		return gatherResp{}, err
	}
	return gatherResp{Copy: rec.copyState(), Rec: rec}, nil
}

func (n *Node) holdFetch(ctx context.Context, from string, req *fetchReq) (fetchResp, error) {
	rec, err := n.store.Job(req.Job)
	if err != nil {
		return fetchResp{}, err
	}
	resp := fetchResp{Rec: *rec}
	if req.AfterSeq < rec.Results {
		rs, err := n.store.Results(req.Job, req.AfterSeq, 1024, true)
		if err != nil {
			return fetchResp{}, err
		}
		size := 0
		for i, r := range rs {
			size += len(r.Output) + len(r.Log) + len(r.Message) + 256
			if size > holdChunk && i > 0 {
				rs = rs[:i]
				break
			}
		}
		resp.Results = rs
	}
	if req.InFrom < rec.Items {
		if resp.Inputs, err = n.store.InputsFrom(req.Job, req.InFrom, holdChunk); err != nil {
			return fetchResp{}, err
		}
		if req.InFrom == 0 && rec.FilesDir != "" {
			files, err := readJobFiles(rec.FilesDir)
			if err != nil {
				return fetchResp{}, err
			}
			resp.Files = files
		}
	}
	return resp, nil
}

func (n *Node) holdWhere(ctx context.Context, from string, req *whereReq) (whereResp, error) {
	id := req.Job
	if req.Key != "" {
		id, _ = n.store.LookupIdempotent(req.Key)
	}
	if h := n.ledger.holders(id); h != nil {
		return whereResp{Holders: h, Job: id}, nil
	}
	return whereResp{}, nil
}

// --- home side ---

// wire is the record as holders get it: their own promise and files
// directory are theirs.
func (r *jobRecord) wire() jobRecord {
	w := *r
	w.Promise = 0
	return w
}

// sendWhole sends a job to a holder that lacks it: record and inputs in
// parts, then (by catching up) every result.
func (n *Node) sendWhole(rec *jobRecord, to string) error {
	w := rec.wire()
	w.Results, w.OK, w.ByStatus = 0, 0, nil
	first := uint64(0)
	for {
		req := putReq{Rec: w, First: first}
		if first < rec.Items {
			in, err := n.store.InputsFrom(rec.ID, first, holdChunk)
			if err != nil {
				return err
			}
			req.Inputs = in
		}
		if first == 0 && rec.FilesDir != "" {
			files, err := readJobFiles(rec.FilesDir)
			if err != nil {
				return err
			}
			req.Files = files
		}
		first += uint64(len(req.Inputs))
		req.Complete = first >= rec.Items
		resp, err := callNode(n, to, methodPut, n.holdPut, &req)
		if err != nil {
			return err
		}
		if resp.Stale {
			return errStale
		}
		if req.Complete {
			return nil
		}
	}
}

// replicate sends one write of the home's (req) to every other holder of
// rec, bringing a holder that is behind up to date first, and returns once
// a majority of the holders (this node among them) has it. Holders that
// are not alive in the view count against it.
func (n *Node) replicate(rec *jobRecord, req *appendReq) error {
	holders := holdersOf(rec)
	need := majority(len(holders)) - 1
	if need <= 0 {
		n.ledger.settle(rec.ID, len(holders))
		return nil
	}
	v := n.view()
	var (
		mu    sync.Mutex
		ok    int
		stale bool
		errs  []error
		wg    sync.WaitGroup
	)
	for _, h := range holders {
		if h == n.id.NodeID {
			continue
		}
		if m, alive := v.Member(h); !alive || !m.Live() {
			continue
		}
		wg.Go(func() {
			err := n.appendTo(h, rec, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, errStale):
				stale = true
			default:
				errs = append(errs, fmt.Errorf("%s: %w", h, err))
			}
		})
	}
	wg.Wait()
	if stale {
		return errStale
	}
	if ok < need {
		if len(errs) == 0 {
			errs = append(errs, errors.New("the others are not alive"))
		}
		return fmt.Errorf("%w: %d of %d (a majority is %d): %w", errNoMajority, ok+1, len(holders), need+1, errors.Join(errs...))
	}
	n.ledger.settle(rec.ID, len(holders))
	return nil
}

// appendTo delivers a write to one holder, sending first what it lacks.
func (n *Node) appendTo(h string, rec *jobRecord, req *appendReq) error {
	last := req.FirstSeq + uint64(len(req.Results)) - 1
	for try := 0; ; try++ {
		resp, err := callNode(n, h, methodAppend, n.holdAppend, req)
		switch {
		case err != nil:
			return err
		case resp.Stale:
			return errStale
		case resp.Results >= last && resp.Items >= rec.Items:
			return nil
		case try == 3:
			return fmt.Errorf("still behind after catching up: it holds %d results and %d items of %d and %d", resp.Results, resp.Items, last, rec.Items)
		case resp.Missing:
			if err := n.sendWhole(rec, h); err != nil {
				return err
			}
			resp = appendResp{}
		}
		if err := n.catchUp(h, rec, resp.Results, resp.Items, req.FirstSeq-1); err != nil {
			return err
		}
	}
}

// catchUp sends a holder the results after seq and the inputs from index
// items that it lacks, up to the results before this write (upTo).
func (n *Node) catchUp(h string, rec *jobRecord, seq, items, upTo uint64) error {
	for seq < upTo || items < rec.Items {
		req := appendReq{Rec: rec.wire(), FirstSeq: seq + 1, InFirst: items}
		if seq < upTo {
			rs, err := n.store.Results(rec.ID, seq, 1024, true)
			if err != nil {
				return err
			}
			size := 0
			for i, r := range rs {
				size += len(r.Output) + len(r.Log) + len(r.Message) + 256
				if (size > holdChunk && i > 0) || r.Seq > upTo {
					rs = rs[:i]
					break
				}
			}
			req.Results = rs
		}
		if items < rec.Items {
			in, err := n.store.InputsFrom(rec.ID, items, holdChunk)
			if err != nil {
				return err
			}
			req.Inputs = in
		}
		resp, err := callNode(n, h, methodAppend, n.holdAppend, &req)
		if err != nil {
			return err
		}
		if resp.Stale {
			return errStale
		}
		if resp.Missing || (resp.Results <= seq && resp.Items <= items) {
			return fmt.Errorf("holder %s made no progress catching up at result %d, item %d", h, seq, items)
		}
		seq, items = resp.Results, resp.Items
	}
	return nil
}

// --- taking over ---

// ledgerLoop makes this node the home of the jobs whose home it becomes,
// and stops serving those whose home it no longer is.
func (n *Node) ledgerLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	v, changed := n.cluster.View()
	for {
		n.checkHomes(v)
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
			v, changed = n.cluster.View()
		case <-t.C:
			v, _ = n.cluster.View()
		}
	}
}

func (n *Node) checkHomes(v grid.View) {
	n.ledger.mu.Lock()
	held := make(map[string][]string, len(n.ledger.held))
	for id, h := range n.ledger.held {
		if !n.ledger.taking[id] {
			held[id] = h
		}
	}
	n.ledger.mu.Unlock()
	var take []string
	now := time.Now()
	for id, holders := range held {
		home, serving := actingHome(v, holders), n.sched.serves(id)
		switch {
		case home == n.id.NodeID && !serving:
			take = append(take, id)
		case home != n.id.NodeID && serving:
			n.sched.release(id, "its home is now "+home)
		case serving:
			if present, gone := n.ledger.count(v, holders, now); gone > 0 && wantHolder(len(holders), present) {
				n.growHolders(v, id)
			}
		}
	}
	if len(take) == 0 || n.cluster.Quorum() != nil {
		return // only a node that holds the cluster's view takes jobs over
	}
	for _, id := range take {
		if !n.exclusive(n.ledger.taking, id, func() {
			if err := n.takeOver(v, id); err != nil {
				n.log.Warn("cannot take over a job yet; trying again", "job", id, "epoch", v.Epoch, "err", err)
			}
		}) {
			return
		}
	}
}

// exclusive runs f on a goroutine of the node's unless a run for the same
// job in set (taking or growing) is under way; false once the node is
// stopping.
func (n *Node) exclusive(set map[string]bool, jobID string, f func()) bool {
	n.ledger.mu.Lock()
	busy := set[jobID]
	set[jobID] = true
	n.ledger.mu.Unlock()
	if busy {
		return true
	}
	done := func() {
		n.ledger.mu.Lock()
		delete(set, jobID)
		n.ledger.mu.Unlock()
	}
	ok := n.spawn(func() {
		defer done()
		f()
	})
	if !ok {
		done()
	}
	return ok
}

// handOver, before the node leaves on purpose, brings every other live
// holder of each job it is the home of up to its own copy, so that the
// next home finds everything at once. What does not get through is found
// by the next home's gather all the same.
func (n *Node) handOver(ctx context.Context) {
	for _, id := range n.sched.served() {
		if ctx.Err() != nil {
			return
		}
		rec, err := n.store.Job(id)
		if err != nil || rec.State != api.JobRunning {
			continue // a finished job's last write reached a majority already
		}
		req := appendReq{Rec: rec.wire(), FirstSeq: rec.Results + 1, InFirst: rec.Items}
		if err := n.replicate(rec, &req); err != nil {
			n.log.Warn("leaving: a job's holders are not all up to date; the next home gathers what they have", "job", id, "err", err)
		}
	}
}

// growHolders copies a job this node is the home of to one more member,
// and adds it to the job's holders once it holds everything: the job
// lost a holder for good.
func (n *Node) growHolders(v grid.View, jobID string) {
	n.exclusive(n.ledger.growing, jobID, func() {
		if err := n.addHolder(v, jobID); errors.Is(err, errNoCandidate) {
			n.log.Debug("a job lost a holder, and no member on another host can take a copy", "job", jobID)
		} else if err != nil {
			n.log.Warn("cannot copy a job to a new holder yet; trying again", "job", jobID, "err", err)
		}
	})
}

func (n *Node) addHolder(v grid.View, jobID string) error {
	rec, err := n.store.Job(jobID)
	if err != nil {
		return err
	}
	// The list grows one holder at a time, each change acknowledged by a
	// majority of the list it makes before the next: then any majority of
	// one list meets any majority of the next. A home that has not yet
	// had a write of its own acknowledged under the list it holds (it just
	// took over, or its last change did not get through) does that first.
	if !n.ledger.settled(jobID, len(holdersOf(rec))) {
		req := appendReq{Rec: rec.wire(), FirstSeq: rec.Results + 1, InFirst: rec.Items}
		if err := n.replicate(rec, &req); err != nil {
			return fmt.Errorf("the holders it has have not all learned of each other yet: %w", err)
		}
	}
	to, ok := newHolder(v, holdersOf(rec), jobID)
	if !ok {
		return errNoCandidate
	}
	req := appendReq{Rec: rec.wire(), FirstSeq: rec.Results + 1, InFirst: rec.Items}
	if err := n.appendTo(to, rec, &req); err != nil { // sends it whole, then what it lacks
		return fmt.Errorf("copy to %s: %w", to, err)
	}
	if rec, err = n.store.AddHolder(jobID, to); err != nil {
		return err
	}
	n.ledger.hold(jobID, rec.Holders)
	n.sched.setHolders(jobID, rec.Holders)
	n.metrics.nCopies.Add(1)
	n.log.Info("copied a job to a new holder", "job", jobID, "holder", to, "holders", rec.Holders, "results", rec.Results)
	req = appendReq{Rec: rec.wire(), FirstSeq: rec.Results + 1, InFirst: rec.Items}
	if err := n.replicate(rec, &req); err != nil {
		n.log.Info("the job's holders learn of the new one with its next write", "job", jobID, "holder", to, "err", err)
	}
	return nil
}

// takeOver makes this node the job's home at term v.Epoch: it gathers the
// holders' promises and copies, takes the best copy, and serves.
func (n *Node) takeOver(v grid.View, jobID string) error {
	term := v.Epoch
	holders := n.ledger.holders(jobID)
	var answers []gathered
	// A majority of the list this node knows may tell of a longer one (the
	// home before added holders): then a majority of that one counts.
	for range maxHolders {
		answers = n.gather(v, jobID, holders, term)
		longest := holders
		for _, a := range answers {
			if a.resp.Rec != nil && len(a.resp.Rec.Holders) > len(longest) {
				longest = a.resp.Rec.Holders
			}
		}
		if len(longest) == len(holders) {
			break
		}
		holders = longest
	}
	if len(answers) < majority(len(holders)) {
		return fmt.Errorf("only %d of its %d holders answered; a majority is %d", len(answers), len(holders), majority(len(holders)))
	}
	best, mine := answers[0], copyState{}
	for _, a := range answers {
		if a.from == n.id.NodeID {
			mine = a.resp.Copy
		}
		if better(a.resp.Copy, best.resp.Copy) {
			best = a
		}
	}
	if !best.resp.Copy.Has {
		return errors.New("no holder has a complete copy: the job was never acknowledged")
	}
	if best.from != n.id.NodeID && better(best.resp.Copy, mine) {
		if err := n.copyFrom(best.from, jobID, mine); err != nil {
			return fmt.Errorf("copy the job from %s: %w", best.from, err)
		}
	}
	rec, err := n.store.TakeOver(jobID, term)
	if err != nil {
		return err
	}
	for _, h := range holders { // the longest list learned, if this copy's is shorter
		if !slices.Contains(rec.Holders, h) {
			if rec, err = n.store.AddHolder(jobID, h); err != nil {
				return err
			}
		}
	}
	n.ledger.hold(jobID, rec.Holders)
	n.ledger.unsettle(jobID) // a write of its own term first, before it adds a holder
	if err := n.sched.add(rec); err != nil {
		return err
	}
	n.metrics.nTakeovers.Add(1)
	n.log.Info("took over a job as its home", "job", jobID, "term", term, "results", rec.Results, "items", rec.Items, "from", best.from)
	return nil
}

// gathered is one holder's answer to a gather.
type gathered struct {
	from string
	resp gatherResp
}

// gather asks the live holders to promise term and say what they hold.
func (n *Node) gather(v grid.View, jobID string, holders []string, term uint64) []gathered {
	var (
		mu      sync.Mutex
		answers []gathered
		wg      sync.WaitGroup
	)
	for _, h := range holders {
		if m, ok := v.Member(h); !ok || !m.Live() {
			continue
		}
		wg.Go(func() {
			resp, err := callNode(n, h, methodGather, n.holdGather, &gatherReq{Job: jobID, Term: term})
			if err == nil {
				mu.Lock()
				answers = append(answers, gathered{h, resp})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return answers
}

// copyFrom brings this node's copy of a job up to holder src's, which is
// better: the record and inputs it lacks, then results (all of them when
// its log is not a prefix of src's).
func (n *Node) copyFrom(src, jobID string, mine copyState) error {
	first, err := callNode(n, src, methodFetch, n.holdFetch, &fetchReq{Job: jobID, AfterSeq: ^uint64(0) >> 1, InFrom: ^uint64(0) >> 1})
	if err != nil {
		return err
	}
	theirs := first.Rec
	seq, items := mine.Results, uint64(0)
	if !mine.Has {
		seq = 0
	} else if rec, err := n.store.Job(jobID); err == nil {
		items = rec.Items
	}
	if !mine.Has || mine.Term != theirs.Term || mine.Results > theirs.Results {
		seq = 0 // not a prefix of theirs: the whole log again
	}
	for {
		resp, err := callNode(n, src, methodFetch, n.holdFetch, &fetchReq{Job: jobID, AfterSeq: seq, InFrom: items})
		if err != nil {
			return err
		}
		if err := n.store.CopyIn(&resp.Rec, seq, resp.Results, items, resp.Inputs, n.filesDirFor(&resp.Rec, resp.Files)); err != nil {
			return err
		}
		if len(resp.Results) > 0 {
			seq = resp.Results[len(resp.Results)-1].Seq
		}
		items += uint64(len(resp.Inputs))
		if seq >= resp.Rec.Results && items >= resp.Rec.Items {
			n.ledger.hold(jobID, resp.Rec.Holders)
			return nil
		}
		if len(resp.Results) == 0 && len(resp.Inputs) == 0 {
			return fmt.Errorf("holder %s sent nothing at result %d, item %d", src, seq, items)
		}
	}
}

// filesDirFor writes a job's files, when a fetch brought them, and returns
// where they are on this node ("" for a job without files).
func (n *Node) filesDirFor(rec *jobRecord, files map[string][]byte) string {
	if rec.FilesDir == "" {
		return ""
	}
	dir := filepath.Join(n.dataDir, "jobs", rec.ID, "files")
	if files != nil {
		os.RemoveAll(dir)
		if err := writeJobFiles(dir, files); err != nil {
			n.log.Warn("could not write a job's files", "job", rec.ID, "err", err)
		}
	}
	return dir
}

// --- finding a job's home ---

// homeFor returns the home of a job under the current view: from this
// node's copy, or else by asking the node that accepted it and the other
// members who holds it.
func (n *Node) homeFor(ctx context.Context, jobID string) (string, error) {
	holders := n.ledger.holders(jobID)
	v := n.view()
	if holders == nil {
		holders = n.askWhere(ctx, v, jobID)
	}
	if holders == nil {
		return "", fmt.Errorf("%w: job %s (no member holds it: unknown, or its results expired)", ErrNotFound, jobID)
	}
	home := actingHome(v, holders)
	if home == "" {
		return "", transport.Errorf(transport.CodeUnavailable, "job %s: none of the nodes that keep it (%v) is alive now; it is served again once one of them is back", jobID, holders)
	}
	return home, nil
}

// askWhere asks the members who holds a job: the node that accepted it
// first, then every live member at once.
func (n *Node) askWhere(ctx context.Context, v grid.View, jobID string) []string {
	var found whereResp
	if front := homeOf(jobID); front != "" && front != n.id.NodeID {
		if m, ok := v.Member(front); ok && m.Live() {
			found = n.askOne(ctx, front, &whereReq{Job: jobID})
		}
	}
	if found.Holders == nil {
		found = n.askAll(ctx, v, &whereReq{Job: jobID})
	}
	return found.Holders
}

// askByKey finds a job submitted with an idempotency key through another
// node: its ID, or "".
func (n *Node) askByKey(ctx context.Context, key string) string {
	if id, ok := n.store.LookupIdempotent(key); ok {
		return id
	}
	return n.askAll(ctx, n.view(), &whereReq{Key: key}).Job
}

func (n *Node) askOne(ctx context.Context, to string, req *whereReq) whereResp {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var resp whereResp
	if err := n.cluster.Call(ctx, to, methodWhere, req, &resp); err != nil || resp.Job == "" {
		return whereResp{}
	}
	n.ledger.mu.Lock()
	if len(n.ledger.known) > 4096 {
		n.ledger.known = map[string][]string{}
	}
	n.ledger.known[resp.Job] = slices.Clone(resp.Holders)
	n.ledger.mu.Unlock()
	return resp
}

// askAll asks every other live member at once; any answer that names
// holders will do.
func (n *Node) askAll(ctx context.Context, v grid.View, req *whereReq) whereResp {
	var mu sync.Mutex
	var found whereResp
	var wg sync.WaitGroup
	for _, m := range v.Live() {
		if m.NodeID == n.id.NodeID {
			continue
		}
		wg.Go(func() {
			if r := n.askOne(ctx, m.NodeID, req); r.Job != "" {
				mu.Lock()
				found = r
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return found
}

// notServedHere explains a job this node is the home of but does not
// serve yet.
func notServedHere(jobID string) error {
	return transport.Errorf(transport.CodeUnavailable, "job %s: this node is taking it over as its home (the one before is gone); try again in a moment", jobID)
}
