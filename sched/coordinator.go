package sched

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
)

// Coordinator timing. An execution's deadline runs from when its executor
// starts it (its inventory says running); a queued execution gets several
// deadlines' worth of patience. Both stretch with the cluster's crisis
// factor.
const (
	sweepEvery      = 250 * time.Millisecond
	fullFor         = 300 * time.Millisecond // how long an executor's announced queue room is believed
	guessRoom       = minQueue               // room assumed in an executor not heard from lately
	dropLinger      = 10 * time.Millisecond  // roll-backs wait this long for a report's reply to ride on
	unreachableFor  = 2 * time.Second        // skip an executor a call failed to reach
	queuePatience   = 4                      // queued deadline = this × the item deadline
	inventoryLag    = 2 * time.Second        // a finished execution in an inventory whose report never came
	itemSlack       = 30 * time.Second       // default item deadline = execution deadline + this
	commitRetry     = 500 * time.Millisecond
	stalledPerSweep = 1024 // stalled items placed again per sweep
)

type itemPhase uint8

const (
	phaseOpen       itemPhase = iota + 1 // executions run and vote
	phaseTaking                          // decided: fetching the canonical outcome
	phaseCommitting                      // waiting for the home to log it
)

// cjob is a job as a coordinator knows it: its header and the items its
// home assigned here.
type cjob struct {
	hdr      jobHeader
	policy   VotePolicy
	deadline time.Duration // item deadline before stretching
	items    map[uint64]*citem
}

// citem is one item this node coordinates.
type citem struct {
	job     *cjob
	idx     uint64
	id      string
	input   []byte
	execs   []*cexec
	phase   itemPhase
	stalled bool       // in the coordinator's stalled list
	noNode  bool       // stalled for want of hosts, not of room
	seq     int        // executions ever named: IDs are never reused
	draw    float64    // adaptive replication's draw, fixed per item
	votes   []api.Vote // as they stood when the item was decided
	taking  *cexec
	// resume: an execution of it was lost (here, or with a coordinator
	// before this one), so the job's home may hold a checkpoint of it: the
	// next executions ask for one before they start.
	resume bool
}

// cexec is one execution of an item, as its coordinator follows it.
type cexec struct {
	id       string
	item     *citem
	node     string
	inc      uint64 // the executor's incarnation when dispatched
	host     string
	state    ExecState
	digest   string
	message  string
	sent     time.Time
	running  time.Time      // first seen running in the executor's inventory
	finished time.Time      // first seen finished there without a report
	out      *stagedOutcome // the outcome, when its report carried it
	resume   bool           // sent to resume from the item's checkpoint, if its holders keep one
}

// wire is the execution as its executor receives it.
func (x *cexec) wire() execItem {
	return execItem{ID: x.id, Job: x.item.job.hdr.ID, Index: x.item.idx, Input: x.item.input, Resume: x.resume}
}

// room is an executor's queue room as this coordinator believes it: what
// the executor last announced, less what was sent to it since.
type room struct {
	n  int
	at time.Time
}

// coordinator decides the items the homes assign to this node: it
// dispatches their executions, follows them, tallies their votes, fetches
// the canonical outcome and hands it to the job's home.
type coordinator struct {
	n   *Node
	log *slog.Logger

	execs   outboxes[*cexec]      // per executor: executions to start
	drops   outboxes[string]      // per executor: executions to roll back
	takes   outboxes[*cexec]      // per executor: canonical outcomes to fetch
	commits outboxes[commitEntry] // per home: decided items

	mu struct {
		sync.Mutex
		// tag names this coordinator (node and incarnation) in execution
		// IDs: when an item moves to a new coordinator, its executions
		// never share an ID with those of the old one still held by some
		// executor. inc is the incarnation it names.
		tag   string
		inc   uint64
		view  grid.View
		jobs  map[string]*cjob
		execs map[string]*cexec
		skip  map[string]time.Time // executor → skip it until (unreachable)
		room  map[string]room      // executor → its queue room
		// replyTo, while a report is handled, is its executor: what is
		// dispatched to it goes in the reply, not in a call of its own.
		replyTo   string
		replyWith []*cexec
		stalled   []*citem // items fewer hosts could take than they need, oldest first
		rep       *Reputation
		rng       *rand.Rand
		watched   map[string]func() // executors whose inventories this node follows
	}
}

// commitEntry is one decided item on its way to its home.
type commitEntry struct {
	it   *citem
	item commitItem
}

func (e commitEntry) size() int {
	r := e.item.Result
	return len(r.Output) + len(r.Log) + len(r.Message) + emittedBytes(e.item.Emitted) + 512
}

func newCoordinator(n *Node) *coordinator {
	c := &coordinator{n: n, log: n.log}
	c.mu.inc, c.mu.tag = n.id.Incarnation, coordTag(n.id.NodeID, n.id.Incarnation)
	c.mu.jobs = map[string]*cjob{}
	c.mu.execs = map[string]*cexec{}
	c.mu.skip = map[string]time.Time{}
	c.mu.room = map[string]room{}
	c.mu.rep = NewReputation()
	c.mu.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))
	c.mu.watched = map[string]func(){}
	c.execs.new = func(node string) *outbox[*cexec] {
		return &outbox[*cexec]{max: 1024, size: func(x *cexec) int { return len(x.item.input) + 64 }, bytes: 4 << 20,
			spawn: n.spawn, send: func(b []*cexec) { c.sendExecs(node, b) }}
	}
	c.drops.new = func(node string) *outbox[string] {
		return &outbox[string]{max: 4096, linger: dropLinger, spawn: n.spawn, send: func(b []string) { c.sendDrops(node, b) }}
	}
	c.takes.new = func(node string) *outbox[*cexec] {
		return &outbox[*cexec]{max: 1024, spawn: n.spawn, send: func(b []*cexec) { c.sendTakes(node, b) }}
	}
	c.commits.new = func(home string) *outbox[commitEntry] {
		return &outbox[commitEntry]{max: 1024, size: commitEntry.size, bytes: 4 << 20,
			spawn: n.spawn, send: func(b []commitEntry) { c.sendCommits(home, b) }}
	}
	return c
}

// votePolicy is a job's policy as the tally takes it, defaults filled in.
func votePolicy(p api.Policy) VotePolicy {
	v := VotePolicy{Replicas: p.Replicas, Quorum: p.Quorum, Attempts: p.Attempts, MaxErrors: p.MaxErrors, Adaptive: p.Adaptive}
	if v.Replicas <= 0 {
		v.Replicas = 1
	}
	if v.Quorum <= 0 {
		v.Quorum = v.Replicas
	}
	if v.Attempts <= 0 {
		v.Attempts = v.Replicas + 2
	}
	if v.MaxErrors <= 0 {
		v.MaxErrors = 3
	}
	return v
}

// itemDeadline is how long an execution of the job may run before its
// item is tried elsewhere, before stretching.
func itemDeadline(p api.Policy, max plugins.Limits) time.Duration {
	if p.ItemDeadline > 0 {
		return p.ItemDeadline
	}
	d := p.Limits.Deadline
	if d <= 0 || d > max.Deadline {
		d = min(plugins.DefaultDeadline, max.Deadline)
	}
	return d + itemSlack
}

// loop follows the view and sweeps deadlines until the node stops.
func (c *coordinator) loop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	v, changed := c.n.cluster.View()
	c.setView(v)
	for {
		select {
		case <-c.n.ctx.Done():
			c.mu.Lock()
			for _, stop := range c.mu.watched {
				stop()
			}
			c.mu.Unlock()
			return
		case <-changed:
			v, changed = c.n.cluster.View()
			c.setView(v)
		case now := <-t.C:
			c.sweep(now)
		}
	}
}

func coordTag(node string, inc uint64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s#%d", node, inc))
	return hex.EncodeToString(sum[:3])
}

// setView takes a new view: executions on members that died, left or
// restarted are lost; stalled items get another chance.
func (c *coordinator) setView(v grid.View) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.view = v
	if self, ok := v.Member(c.n.id.NodeID); ok && self.Incarnation > c.mu.inc {
		c.rejoinedLocked(self.Incarnation)
	}
	touched := map[*citem]bool{}
	for _, x := range c.mu.execs {
		if x.state != ExecPending && x.state != ExecDone {
			continue
		}
		if m, ok := v.Member(x.node); !ok || m.State != grid.Alive || m.Incarnation != x.inc {
			why := "its executor " + x.node + " left the cluster"
			if ok && m.State == grid.Dead {
				why = "its executor " + x.node + " died"
			} else if ok && m.Incarnation != x.inc {
				why = "its executor " + x.node + " restarted"
			}
			c.loseLocked(x, why)
			touched[x.item] = true
		}
	}
	for id, stop := range c.mu.watched {
		if m, ok := v.Member(id); !ok || m.State != grid.Alive {
			stop()
			delete(c.mu.watched, id)
		}
	}
	for it := range touched {
		c.evaluateLocked(it, now)
	}
	c.retryStalledLocked(len(c.mu.stalled), now)
}

// rejoinedLocked forgets everything this coordinator held: the cluster
// declared this node dead (it was paused or cut off) and it came back at a
// new incarnation. The executors dropped its executions, and the homes
// assign its items again, to this node's new incarnation or to another.
func (c *coordinator) rejoinedLocked(inc uint64) {
	items := 0
	for _, j := range c.mu.jobs {
		items += len(j.items)
	}
	for _, x := range c.mu.execs {
		if x.state == ExecPending || x.state == ExecDone {
			c.drops.to(x.node).push(x.id)
		}
	}
	c.mu.jobs, c.mu.execs, c.mu.stalled = map[string]*cjob{}, map[string]*cexec{}, nil
	c.mu.inc, c.mu.tag = inc, coordTag(c.n.id.NodeID, inc)
	if items > 0 {
		c.log.Info("came back at a new incarnation: dropping the items coordinated before", "items", items, "incarnation", inc)
	}
}

// retryStalledLocked places again up to budget of the items that could not
// all be placed, oldest first.
func (c *coordinator) retryStalledLocked(budget int, now time.Time) {
	n := min(budget, len(c.mu.stalled))
	if n <= 0 {
		return
	}
	batch := slices.Clone(c.mu.stalled[:n])
	c.mu.stalled = slices.Delete(c.mu.stalled, 0, n)
	for _, it := range batch {
		it.stalled = false
		c.evaluateLocked(it, now)
	}
}

// loseLocked marks an execution lost; its item is to be evaluated.
func (c *coordinator) loseLocked(x *cexec, why string) {
	if x.state == ExecDone && x.item.taking == x {
		x.item.taking = nil
		x.item.phase = phaseOpen
	}
	x.state, x.message = ExecLost, why
	c.n.metrics.lost.Add(context.Background(), 1)
	c.n.metrics.nLost.Add(1)
	// Its checkpoint, if it saved one, is where the next execution starts.
	x.item.resume = true
}

// sweep enforces deadlines and reads the executors' inventories: what runs
// (its deadline starts), what finished without its report arriving.
func (c *coordinator) sweep(now time.Time) {
	stretch := c.n.cluster.Stretch()
	c.mu.Lock()
	defer c.mu.Unlock()
	invs := map[string]grid.PeerInventory{}
	touched := map[*citem]bool{}
	for _, x := range c.mu.execs {
		if x.state != ExecPending {
			continue
		}
		var e grid.Execution
		var found bool
		if x.node == c.n.id.NodeID {
			e, found = c.n.exec.entry(x.id)
		} else {
			inv, ok := invs[x.node]
			if !ok {
				inv, _ = c.n.cluster.PeerInventory(x.node)
				invs[x.node] = inv
			}
			e, found = inv.Entries[x.id]
			found = found && inv.Incarnation == x.inc
		}
		if found {
			switch e.State {
			case grid.ExecRunning:
				if x.running.IsZero() {
					x.running = now
				}
			case grid.ExecFinished:
				if x.finished.IsZero() {
					x.finished = now
				} else if now.Sub(x.finished) > inventoryLag {
					// The report was lost; the inventory carries the digest.
					x.state, x.digest = ExecDone, "sha256:"+hex.EncodeToString(e.Digest)
					touched[x.item] = true
					continue
				}
			case grid.ExecAbandoned:
				c.loseLocked(x, "its executor abandoned it")
				c.drops.to(x.node).push(x.id)
				touched[x.item] = true
				continue
			}
		}
		d := time.Duration(float64(x.item.job.deadline) * stretch)
		var late bool
		if !x.running.IsZero() {
			late = now.Sub(x.running) > d
		} else {
			late = now.Sub(x.sent) > queuePatience*d
		}
		if late {
			c.loseLocked(x, fmt.Sprintf("no outcome from %s within the item deadline (%v)", x.node, d.Round(time.Second)))
			c.drops.to(x.node).push(x.id)
			touched[x.item] = true
		}
	}
	for id, until := range c.mu.skip {
		if now.After(until) {
			delete(c.mu.skip, id)
		}
	}
	for it := range touched {
		c.evaluateLocked(it, now)
	}
	c.retryStalledLocked(stalledPerSweep, now)
}

// assign takes items from their jobs' home.
func (c *coordinator) assign(ctx context.Context, from string, req *assignReq) (assignResp, error) {
	now := time.Now()
	max := c.n.sandbox.MaxLimits()
	hdrs := map[string]jobHeader{}
	for _, h := range req.Jobs {
		if h.Home != from {
			return assignResp{}, fmt.Errorf("sched: node %s assigned items of job %s, whose home is %s", from, h.ID, h.Home)
		}
		hdrs[h.ID] = h
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range req.Items {
		j := c.mu.jobs[a.Job]
		if j == nil {
			h, ok := hdrs[a.Job]
			if !ok {
				return assignResp{}, fmt.Errorf("sched: an assignment of item %d names job %s without its header", a.Index, a.Job)
			}
			j = &cjob{hdr: h, policy: votePolicy(h.Spec.Policy), deadline: itemDeadline(h.Spec.Policy, max), items: map[uint64]*citem{}}
			c.mu.jobs[a.Job] = j
		}
		if _, held := j.items[a.Index]; held {
			continue
		}
		it := &citem{job: j, idx: a.Index, id: ItemID(j.hdr.ID, a.Index), input: a.Input, phase: phaseOpen, draw: c.mu.rng.Float64(), resume: a.Resume}
		j.items[a.Index] = it
		c.evaluateLocked(it, now)
	}
	return assignResp{}, nil
}

// evaluateLocked tallies an open item and acts on the verdict.
func (c *coordinator) evaluateLocked(it *citem, now time.Time) {
	if it.phase != phaseOpen || c.mu.jobs[it.job.hdr.ID] != it.job {
		return
	}
	votes := it.voteList()
	done := 0
	var doneNode string
	for _, x := range it.execs {
		if x.state == ExecDone {
			done++
			doneNode = x.node
		}
	}
	trusted := false
	if it.job.policy.Adaptive && done == 1 {
		trusted = Trusted(c.mu.rep.Count(doneNode, it.job.hdr.Spec.Module), it.draw)
	}
	v := Tally(it.job.policy, votes, trusted)
	switch v.Kind {
	case VerdictDispatch:
		c.dispatchLocked(it, v.Dispatch, now)
	case VerdictCommit:
		c.decideLocked(it, v)
	case VerdictFail:
		c.failLocked(it, v.Reason)
	}
}

// voteList is the item's executions as the tally takes them.
func (it *citem) voteList() []Vote {
	votes := make([]Vote, len(it.execs))
	for i, x := range it.execs {
		votes[i] = Vote{Node: x.node, State: x.state, Digest: x.digest}
	}
	return votes
}

// currentVotes is the item's digests with the nodes that gave them: as
// they stood at the decision once it is decided.
func (it *citem) currentVotes() []api.Vote {
	if it.phase != phaseOpen {
		return it.votes
	}
	return apiVotes(Groups(it.voteList()))
}

func apiVotes(gs []DigestGroup) []api.Vote {
	if len(gs) == 0 {
		return nil
	}
	out := make([]api.Vote, len(gs))
	for i, g := range gs {
		out[i] = api.Vote{Digest: g.Digest, Nodes: g.Nodes}
	}
	return out
}

// dispatchLocked starts k more executions of it on the next free nodes of
// its ranking, never on a host that holds one of its executions.
func (c *coordinator) dispatchLocked(it *citem, k int, now time.Time) {
	// Hosts that hold a live execution of the item are never used again;
	// hosts where one was lost (dead, late) only when no other host can
	// take the item: a retry goes elsewhere.
	avoid, avoidAll := map[string]bool{}, map[string]bool{}
	for _, x := range it.execs {
		if x.state != ExecLost {
			avoid[x.host] = true
		}
		avoidAll[x.host] = true
	}
	module := it.job.hdr.Spec.Module
	skip := func(m grid.Member) bool {
		if until, ok := c.mu.skip[m.NodeID]; ok && now.Before(until) {
			return true
		}
		return c.roomLocked(m.NodeID, now) <= 0 || c.mu.rep.Quarantined(m.NodeID, module, now)
	}
	ms := PlaceExecutors(c.mu.view, it.id, k, avoidAll, skip)
	if len(ms) < k && len(avoidAll) > len(avoid) {
		ms = PlaceExecutors(c.mu.view, it.id, k, avoid, skip)
	}
	if len(ms) < k {
		// Waiting for room on a full executor, or for more hosts?
		it.noNode = len(PlaceExecutors(c.mu.view, it.id, k, avoid, func(m grid.Member) bool {
			return c.mu.rep.Quarantined(m.NodeID, module, now)
		})) < k
		if !it.stalled {
			it.stalled = true
			c.mu.stalled = append(c.mu.stalled, it)
		}
	}
	for _, m := range ms {
		it.seq++
		x := &cexec{
			id: fmt.Sprintf("%s.%s.%d", it.id, c.mu.tag, it.seq), item: it, node: m.NodeID, inc: m.Incarnation,
			host: m.Host(), state: ExecPending, sent: now,
		}
		if it.resume {
			x.resume = true
			c.n.metrics.nResumed.Add(1)
		}
		it.execs = append(it.execs, x)
		c.mu.execs[x.id] = x
		if m.NodeID != c.n.id.NodeID {
			if _, ok := c.mu.watched[m.NodeID]; !ok {
				c.mu.watched[m.NodeID] = c.n.cluster.WatchInventory(m.NodeID)
			}
		}
		c.takeRoomLocked(m.NodeID, now)
		if m.NodeID == c.mu.replyTo {
			c.mu.replyWith = append(c.mu.replyWith, x)
		} else {
			c.execs.to(m.NodeID).push(x)
		}
	}
}

// roomLocked is the queue room this coordinator believes an executor has.
func (c *coordinator) roomLocked(node string, now time.Time) int {
	r, ok := c.mu.room[node]
	if !ok || now.Sub(r.at) > fullFor {
		return guessRoom
	}
	return r.n
}

// takeRoomLocked counts one execution sent to an executor.
func (c *coordinator) takeRoomLocked(node string, now time.Time) {
	r, ok := c.mu.room[node]
	if !ok || now.Sub(r.at) > fullFor {
		r = room{n: guessRoom, at: now}
	}
	r.n--
	c.mu.room[node] = r
}

// setRoomLocked takes the room an executor announced.
func (c *coordinator) setRoomLocked(node string, n int, now time.Time) {
	c.mu.room[node] = room{n: n, at: now}
}

// decideLocked records the vote and commits the canonical outcome: the
// one a report carried, or else it fetches it from one of the executions
// that gave it, this node's own when it has one.
func (c *coordinator) decideLocked(it *citem, v Verdict) {
	now := time.Now()
	module := it.job.hdr.Spec.Module
	var quarantined []string
	var pick *cexec
	better := func(x *cexec) bool {
		if (x.out != nil) != (pick.out != nil) {
			return x.out != nil
		}
		return x.node == c.n.id.NodeID
	}
	for _, i := range v.Agree {
		if x := it.execs[i]; pick == nil || better(x) {
			pick = x
		}
	}
	for _, x := range it.execs {
		if x.state != ExecDone {
			continue
		}
		if x.digest == v.Digest {
			c.mu.rep.Agreed(x.node, module)
		} else if c.mu.rep.Disagreed(x.node, module, now) {
			c.log.Warn("quarantining a node for a module: its results keep disagreeing with the canonical ones",
				"executor", x.node, "module", module, "for", QuarantineFor)
			c.n.metrics.quarantines.Add(context.Background(), 1)
			quarantined = append(quarantined, x.node)
		}
	}
	it.votes = it.currentVotes()
	if pick.out != nil {
		// Committed from the report: the executor's staged copy is
		// released (rolled back) like every other execution's.
		res, emitted := it.result(pick.node, *pick.out)
		c.commitLocked(it, res, emitted)
	} else {
		it.phase, it.taking = phaseTaking, pick
		c.takes.to(pick.node).push(pick)
	}
	if len(it.execs) > it.job.policy.Replicas {
		c.n.metrics.decided("more")
	} else {
		c.n.metrics.decided("agreed")
	}
	for _, node := range quarantined {
		c.withdrawFromLocked(node, module, now)
	}
}

// withdrawFromLocked takes back the executions of a module that a node
// just quarantined has not finished: they roll back there and go to other
// nodes, using no attempt.
func (c *coordinator) withdrawFromLocked(node, module string, now time.Time) {
	var items []*citem
	for _, x := range c.mu.execs {
		if x.node == node && x.state == ExecPending && x.item.job.hdr.Spec.Module == module && x.item.phase == phaseOpen {
			c.drops.to(node).push(x.id)
			c.withdrawLocked(x)
			items = append(items, x.item)
		}
	}
	for _, it := range items {
		c.evaluateLocked(it, now)
	}
}

// failLocked gives the item a failed result that says why, and rolls back
// every execution.
func (c *coordinator) failLocked(it *citem, reason string) {
	it.votes = it.currentVotes()
	var msg string
	switch reason {
	case ReasonNoConsensus:
		parts := make([]string, len(it.votes))
		for i, v := range it.votes {
			parts[i] = fmt.Sprintf("%s from %s", shortDigest(v.Digest), strings.Join(v.Nodes, ", "))
		}
		msg = fmt.Sprintf("no %d executions agreed within %d attempts: %s", it.job.policy.Quorum, it.job.policy.Attempts, strings.Join(parts, "; "))
	case ReasonTooManyErrors:
		msg = fmt.Sprintf("more than %d executions were lost: %s", it.job.policy.MaxErrors, c.lossesOf(it))
	default:
		msg = fmt.Sprintf("%d of %d attempts used and %d executions cannot agree with those left: %s", len(it.execs), it.job.policy.Attempts, it.job.policy.Quorum, c.lossesOf(it))
	}
	res := api.Result{Index: it.idx, ItemID: it.id, Status: reason, Message: msg, Attempts: len(it.execs), Votes: it.votes}
	c.n.metrics.decided(reason)
	c.commitLocked(it, res, nil)
}

func (c *coordinator) lossesOf(it *citem) string {
	var parts []string
	for _, x := range it.execs {
		if x.state == ExecLost {
			parts = append(parts, x.node+": "+x.message)
		}
	}
	if len(parts) == 0 {
		return "none lost"
	}
	return strings.Join(parts, "; ")
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	return "sha256:" + d[:min(12, len(d))]
}

// commitLocked rolls back every execution but the one taken and sends the
// result to the job's home.
func (c *coordinator) commitLocked(it *citem, res api.Result, emitted [][]byte) {
	for _, x := range it.execs {
		if x != it.taking && x.state != ExecLost {
			c.drops.to(x.node).push(x.id)
		}
		delete(c.mu.execs, x.id)
	}
	it.phase = phaseCommitting
	c.commits.to(it.job.hdr.home(c.mu.view)).push(commitEntry{it: it, item: commitItem{Job: it.job.hdr.ID, Result: res, Emitted: emitted}})
}

// report takes executors' reports of finished executions. Its reply
// carries what this coordinator has for the executor: executions to roll
// back or release, and new ones, up to the room the report announced.
func (c *coordinator) report(ctx context.Context, from string, req *reportReq) (reportResp, error) {
	now := time.Now()
	resp := reportResp{CoordInc: c.n.cluster.Self().Incarnation}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.replyTo, c.mu.replyWith = from, nil
	touched := map[*citem]bool{}
	for _, r := range req.Execs {
		x := c.mu.execs[r.ID]
		if x == nil || x.node != from {
			if !r.Refused {
				resp.Drop = append(resp.Drop, r.ID)
			}
			continue
		}
		if x.state != ExecPending {
			continue
		}
		switch {
		case r.Refused:
			c.withdrawLocked(x)
		case r.Lost:
			c.loseLocked(x, r.Message)
		default:
			x.state, x.digest, x.out = ExecDone, r.Digest, r.Outcome
		}
		touched[x.item] = true
	}
	// The executor's room, as it announced it, less what the items just
	// evaluated place there; then what waits for room.
	c.setRoomLocked(from, req.Free, now)
	if req.Free > 0 && c.mu.skip[from].After(now) {
		delete(c.mu.skip, from) // it reached us: it is reachable
	}
	for it := range touched {
		c.evaluateLocked(it, now)
	}
	if free := c.roomLocked(from, now); free > 0 {
		c.retryStalledLocked(free, now)
	}
	seen := map[string]bool{}
	for _, x := range c.mu.replyWith {
		j := x.item.job
		if !seen[j.hdr.ID] {
			seen[j.hdr.ID] = true
			resp.Jobs = append(resp.Jobs, j.hdr)
		}
		resp.Execs = append(resp.Execs, x.wire())
	}
	c.mu.replyTo, c.mu.replyWith = "", nil
	resp.Drop = append(resp.Drop, c.drops.to(from).steal()...)
	return resp, nil
}

// sendExecs delivers executions to an executor. Those its full queue
// refused are withdrawn (they never started) and placed again; a failed
// call loses them all.
func (c *coordinator) sendExecs(node string, batch []*cexec) {
	req := execReq{Coord: c.n.id.NodeID, CoordInc: c.n.cluster.Self().Incarnation, Execs: make([]execItem, 0, len(batch))}
	seen := map[string]bool{}
	c.mu.Lock()
	for _, x := range batch {
		if x.state != ExecPending || c.mu.execs[x.id] != x {
			continue // decided or lost while queued here
		}
		j := x.item.job
		if !seen[j.hdr.ID] {
			seen[j.hdr.ID] = true
			req.Jobs = append(req.Jobs, j.hdr)
		}
		req.Execs = append(req.Execs, x.wire())
	}
	c.mu.Unlock()
	if len(req.Execs) == 0 {
		return
	}
	resp, err := callNode(c.n, node, methodExec, c.n.exec.accept, &req)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	touched := map[*citem]bool{}
	if err != nil {
		c.log.Debug("could not send executions; placing them elsewhere", "executor", node, "executions", len(req.Execs), "err", err)
		c.mu.skip[node] = now.Add(unreachableFor)
		for _, e := range req.Execs {
			if x := c.mu.execs[e.ID]; x != nil && x.state == ExecPending {
				c.withdrawLocked(x)
				touched[x.item] = true
			}
		}
	} else {
		c.setRoomLocked(node, resp.Free, now)
		for _, e := range req.Execs[min(resp.Accepted, len(req.Execs)):] {
			if x := c.mu.execs[e.ID]; x != nil && x.state == ExecPending {
				c.withdrawLocked(x)
				touched[x.item] = true
			}
		}
	}
	for it := range touched {
		c.evaluateLocked(it, now)
	}
}

// withdrawLocked forgets an execution that never reached its executor: it
// used no attempt.
func (c *coordinator) withdrawLocked(x *cexec) {
	delete(c.mu.execs, x.id)
	it := x.item
	if i := slices.Index(it.execs, x); i >= 0 {
		it.execs = slices.Delete(it.execs, i, i+1)
	}
}

func (c *coordinator) sendDrops(node string, ids []string) {
	if _, err := callNode(c.n, node, methodDrop, c.n.exec.drop, &dropReq{IDs: ids}); err != nil {
		// The executor is unreachable; it drops them itself once it finds
		// this coordinator gone, or after the staged TTL.
		c.log.Debug("could not roll back executions", "executor", node, "executions", len(ids), "err", err)
	}
}

// sendTakes fetches canonical outcomes and sends them on to their homes.
func (c *coordinator) sendTakes(node string, batch []*cexec) {
	req := takeReq{IDs: make([]string, len(batch))}
	for i, x := range batch {
		req.IDs[i] = x.id
	}
	resp, err := callNode(c.n, node, methodTake, c.n.exec.take, &req)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var again []*cexec
	for i, x := range batch {
		it := x.item
		if it.taking != x || it.phase != phaseTaking {
			continue
		}
		switch {
		case err != nil:
			c.loseLocked(x, "could not fetch its outcome: "+err.Error())
			c.evaluateLocked(it, now)
		case i >= len(resp.Outcomes):
			again = append(again, x)
		case resp.Outcomes[i].Missing:
			c.loseLocked(x, "its outcome was no longer staged on "+node)
			c.evaluateLocked(it, now)
		default:
			res, emitted := it.result(node, resp.Outcomes[i])
			c.commitLocked(it, res, emitted)
		}
	}
	if len(again) > 0 {
		c.takes.to(node).push(again...)
	}
}

// result is the item's result from its canonical outcome, staged on node,
// and the child items it emitted (only an ok outcome's count).
func (it *citem) result(node string, o stagedOutcome) (api.Result, [][]byte) {
	res := api.Result{
		Index: it.idx, ItemID: it.id, Status: o.Status, ExitCode: o.ExitCode, Output: o.Stdout, Log: o.Stderr,
		Message: o.Message, Digest: o.Digest, Node: node, Duration: o.Duration, Attempts: len(it.execs), Votes: it.votes,
		Resumed: o.Resumed,
	}
	if o.Status != string(plugins.StatusOK) {
		return res, nil
	}
	return res, o.Emitted
}

// sendCommits hands decided items to their home, retrying until it takes
// them; the home's result log is where exactly-once is decided.
func (c *coordinator) sendCommits(home string, batch []commitEntry) {
	req := commitReq{From: c.n.id.NodeID, Items: make([]commitItem, len(batch))}
	for i, e := range batch {
		req.Items[i] = e.item
	}
	for {
		resp, err := callNode(c.n, home, methodCommit, c.n.sched.commit, &req)
		if err == nil && len(resp.Status) == len(batch) {
			var moved []commitEntry
			c.mu.Lock()
			for i, e := range batch {
				if resp.Status[i] == commitMoved {
					moved = append(moved, e)
				} else {
					c.forgetItemLocked(e.it)
				}
			}
			c.mu.Unlock()
			if len(moved) > 0 {
				c.recommit(moved)
			}
			return
		}
		if c.n.ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		held := false
		for _, e := range batch {
			held = held || c.mu.jobs[e.it.job.hdr.ID] == e.it.job
		}
		c.mu.Unlock()
		if !held {
			return // the job was cancelled meanwhile
		}
		c.log.Debug("could not commit results at the job's home; retrying", "home", home, "results", len(batch), "err", err)
		v := c.n.view()
		if slices.ContainsFunc(batch, func(e commitEntry) bool { return e.it.job.hdr.home(v) != home }) {
			c.recommit(batch) // the job's home changed
			return
		}
		select {
		case <-time.After(commitRetry):
		case <-c.n.ctx.Done():
			return
		}
	}
}

// recommit sends decided items again, after a pause, to their jobs' homes
// as the view now names them: the home they went to was not (or no longer)
// the home.
func (c *coordinator) recommit(batch []commitEntry) {
	select {
	case <-time.After(commitRetry):
	case <-c.n.ctx.Done():
		return
	}
	v := c.n.view()
	for _, e := range batch {
		c.commits.to(e.it.job.hdr.home(v)).push(e)
	}
}

func (c *coordinator) forgetItemLocked(it *citem) {
	j := it.job
	if j.items[it.idx] == it {
		delete(j.items, it.idx)
	}
	for _, x := range it.execs {
		if c.mu.execs[x.id] == x {
			delete(c.mu.execs, x.id)
		}
	}
	if len(j.items) == 0 && c.mu.jobs[j.hdr.ID] == j {
		delete(c.mu.jobs, j.hdr.ID)
	}
}

// items says where the job's items here stand; with Cancel it drops them.
func (c *coordinator) items(ctx context.Context, from string, req *itemsReq) (itemsResp, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.mu.jobs[req.Job]
	resp := itemsResp{Waiting: map[string]uint64{}}
	for _, q := range c.mu.rep.Quarantines(now) {
		if j != nil && q.Module == j.hdr.Spec.Module {
			resp.Quarantined = append(resp.Quarantined, api.Quarantine{Node: q.Node, Module: q.Module, Until: q.Until})
		}
	}
	if j == nil {
		return resp, nil
	}
	if req.Cancel {
		for _, it := range j.items {
			for _, x := range it.execs {
				if x.state != ExecLost {
					c.drops.to(x.node).push(x.id)
				}
				delete(c.mu.execs, x.id)
			}
		}
		delete(c.mu.jobs, j.hdr.ID)
		return resp, nil
	}
	idxs := make([]uint64, 0, len(j.items))
	for idx := range j.items {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	for _, idx := range idxs {
		it := j.items[idx]
		why := c.whyLocked(it)
		if why == api.WaitRunning {
			resp.Running++
		}
		resp.Waiting[why]++
		if len(resp.Examples) < req.Example {
			st := api.ItemState{Index: idx, Why: why, Coordinator: c.n.id.NodeID, Executions: len(it.execs), Votes: it.currentVotes()}
			for _, x := range it.execs {
				if x.state == ExecPending {
					st.Executors = append(st.Executors, x.node)
					if x.resume {
						st.Resumed++
					}
				}
			}
			resp.Examples = append(resp.Examples, st)
		}
	}
	return resp, nil
}

func (c *coordinator) whyLocked(it *citem) string {
	if it.phase != phaseOpen {
		return api.WaitCommit
	}
	if it.stalled && it.noNode {
		return api.WaitNoNode
	}
	running := false
	for _, x := range it.execs {
		if x.state == ExecPending && !x.running.IsZero() {
			running = true
		}
	}
	switch {
	case len(Groups(it.voteList())) > 1:
		return api.WaitDisagree
	case running:
		return api.WaitRunning
	}
	return api.WaitSlot
}

// checkPolicy refuses a job policy whose fields, or their combination,
// make no sense; zero fields mean their defaults.
func checkPolicy(p api.Policy) error {
	switch {
	case p.Replicas < 0:
		return fmt.Errorf("replicas %d is negative (0 means the default, 1)", p.Replicas)
	case p.Quorum < 0:
		return fmt.Errorf("quorum %d is negative (0 means as many as replicas)", p.Quorum)
	case p.Attempts < 0:
		return fmt.Errorf("attempts %d is negative (0 means replicas + 2)", p.Attempts)
	case p.MaxErrors < 0:
		return fmt.Errorf("max errors %d is negative (0 means the default, 3)", p.MaxErrors)
	case p.ItemDeadline < 0:
		return fmt.Errorf("item deadline %v is negative", p.ItemDeadline)
	case p.ResultTTL < 0:
		return fmt.Errorf("result TTL %v is negative", p.ResultTTL)
	case p.Adaptive && p.Replicas < 2:
		return fmt.Errorf("adaptive replication needs replicas of 2 or more (it starts one execution and checks untrusted results with the others)")
	}
	return CheckPolicy(votePolicy(p))
}
