package sched

import (
	"context"

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
// Checkpoints are kept in the job's bucket of every holder's store,
// fsynced, and forgotten in the same transaction as their item's result
// (Store.Commit, Store.HolderAppend) or their job's end: one is lost only
// with every holder's disk, and then it costs the work since the start of
// the item, never its result.

// saveCheckpoints keeps the newest checkpoint of each item in the batch,
// from the executors of a job this node is the home of, and hands them on
// to the job's other holders.
func (s *Scheduler) saveCheckpoints(ctx context.Context, from string, req *ckptReq) (ckptResp, error) {
	fwd := map[string][]ckptItem{}
	keep := make([]ckptItem, 0, len(req.Items))
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
		keep = append(keep, c)
		for _, h := range holders {
			if m, ok := v.Member(h); ok && m.Live() && h != s.n.id.NodeID {
				fwd[h] = append(fwd[h], c)
			}
		}
	}
	// Handed on first: the other holders store them while this node does,
	// so that one lost with this node is also on another.
	for h, items := range fwd {
		s.ckptFwd.to(h).push(items...)
	}
	return ckptResp{}, s.store.PutCheckpoints(keep)
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
	return ckptResp{}, n.store.PutCheckpoints(req.Items)
}

// loadCheckpoint hands out an item's newest checkpoint, if there is one.
func (s *Scheduler) loadCheckpoint(ctx context.Context, from string, req *resumeReq) (resumeResp, error) {
	return resumeResp{Sealed: s.store.Checkpoint(req.Job, req.Index)}, nil
}
