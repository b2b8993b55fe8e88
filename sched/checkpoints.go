package sched

import (
	"context"
	"sync"

	"github.com/gridnode/gridnode/sdk/api"
)

// A job's home keeps the newest checkpoint of each of its unfinished items,
// as the executors send them while they run (grid.checkpoint_save), and
// hands each on to the job's other holders, so that a new home has them
// too. When an execution is lost (its executor died, left, restarted, or
// missed the deadline) the coordinator marks the item, and the next
// execution asks the home for the checkpoint before it starts; an item
// whose coordinator went away is assigned again marked the same way. A
// checkpoint is forgotten when its item is decided or its job ends.
//
// Checkpoints are kept in memory, on every holder: one is lost only with
// all of them, and then it costs the work since the start of the item,
// never its result.

// maxCkptBytes bounds the checkpoints one node holds for all its jobs;
// past it, a new checkpoint replaces only an older one of the same item.
const maxCkptBytes = 1 << 30

// ckptStore is the checkpoints a node holds, as a home or a holder.
type ckptStore struct {
	mu    sync.Mutex
	jobs  map[string]map[uint64][]byte
	bytes int
}

// put keeps an item's newest checkpoint; false when the node is full.
func (c *ckptStore) put(job string, idx uint64, sealed []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := c.jobs[job]
	old := items[idx]
	if old == nil && c.bytes+len(sealed) > maxCkptBytes {
		return false
	}
	if items == nil {
		if c.jobs == nil {
			c.jobs = map[string]map[uint64][]byte{}
		}
		items = map[uint64][]byte{}
		c.jobs[job] = items
	}
	items[idx] = sealed
	c.bytes += len(sealed) - len(old)
	return true
}

func (c *ckptStore) get(job string, idx uint64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[job][idx]
}

// drop forgets checkpoints of decided items.
func (c *ckptStore) drop(job string, idxs ...uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := c.jobs[job]
	for _, i := range idxs {
		c.bytes -= len(items[i])
		delete(items, i)
	}
	if items != nil && len(items) == 0 {
		delete(c.jobs, job)
	}
}

// dropJob forgets every checkpoint of a job that ended.
func (c *ckptStore) dropJob(job string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.jobs[job] {
		c.bytes -= len(b)
	}
	delete(c.jobs, job)
}

// saveCheckpoints keeps the newest checkpoint of each item in the batch,
// from the executors of a job this node is the home of, and hands them on
// to the job's other holders.
func (s *Scheduler) saveCheckpoints(ctx context.Context, from string, req *ckptReq) (ckptResp, error) {
	fwd := map[string][]ckptItem{}
	v := s.n.view()
	for _, c := range req.Items {
		s.mu.Lock()
		j := s.mu.jobs[c.Job]
		open := j != nil && !j.isDone(c.Index) && j.rec.State == api.JobRunning && len(c.Sealed) > 0
		var holders []string
		if open {
			holders = holdersOf(j.rec)
		}
		s.mu.Unlock()
		if !open {
			continue // decided, its job ended, or not served here: nobody will resume it from here
		}
		if !s.ckpts.put(c.Job, c.Index, c.Sealed) {
			s.log.Warn("not keeping a checkpoint: this node holds its maximum of checkpoints", "job", c.Job, "item", c.Index, "max", maxCkptBytes)
			continue
		}
		for _, h := range holders {
			if m, ok := v.Member(h); ok && m.Live() && h != s.n.id.NodeID {
				fwd[h] = append(fwd[h], c)
			}
		}
	}
	for h, items := range fwd {
		s.ckptFwd.to(h).push(items...)
	}
	return ckptResp{}, nil
}

// sendHeldCheckpoints hands checkpoints on to a holder. One that does not
// arrive is not sent again: the next one of the item is.
func (s *Scheduler) sendHeldCheckpoints(holder string, batch []ckptItem) {
	if _, err := callNode(s.n, holder, methodHeld, s.n.holdCheckpoints, &ckptReq{Items: batch}); err != nil {
		s.log.Debug("could not hand checkpoints on to a holder", "holder", holder, "checkpoints", len(batch), "err", err)
	}
}

// holdCheckpoints keeps checkpoints the home of a job this node holds
// handed on.
func (n *Node) holdCheckpoints(ctx context.Context, from string, req *ckptReq) (ckptResp, error) {
	for _, c := range req.Items {
		if n.ledger.holders(c.Job) != nil && len(c.Sealed) > 0 {
			n.sched.ckpts.put(c.Job, c.Index, c.Sealed)
		}
	}
	return ckptResp{}, nil
}

// loadCheckpoint hands out an item's newest checkpoint, if there is one.
func (s *Scheduler) loadCheckpoint(ctx context.Context, from string, req *resumeReq) (resumeResp, error) {
	return resumeResp{Sealed: s.ckpts.get(req.Job, req.Index)}, nil
}
