package sched

import (
	"context"

	"github.com/gridnode/gridnode/sdk/api"
)

// A job's home keeps the newest checkpoint of each of its unfinished items,
// as the executors send them while they run (grid.checkpoint_save). When an
// execution is lost (its executor died, left, restarted, or missed the
// deadline) the coordinator marks the item, and the next execution asks the
// home for the checkpoint before it starts; an item whose coordinator went
// away is assigned again marked the same way. A checkpoint is forgotten when
// its item is decided or its job ends.
//
// The home keeps checkpoints in memory: one lost with a restart of the home
// costs the work since the start of the item, never its result.

// maxCkptBytes bounds the checkpoints one home holds for all its jobs; past
// it, a new checkpoint replaces only an older one of the same item.
const maxCkptBytes = 1 << 30

// saveCheckpoints keeps the newest checkpoint of each item in the batch.
func (s *Scheduler) saveCheckpoints(ctx context.Context, from string, req *ckptReq) (ckptResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range req.Items {
		j := s.mu.jobs[c.Job]
		if j == nil || j.isDone(c.Index) || j.rec.State != api.JobRunning || len(c.Sealed) == 0 {
			continue // decided, or its job ended: nobody will resume it
		}
		old := j.ckpts[c.Index]
		if s.mu.ckptBytes-len(old)+len(c.Sealed) > maxCkptBytes && old == nil {
			s.log.Warn("not keeping a checkpoint: this node holds its maximum of checkpoints", "job", c.Job, "item", c.Index, "max", maxCkptBytes)
			continue
		}
		if j.ckpts == nil {
			j.ckpts = map[uint64][]byte{}
		}
		j.ckpts[c.Index] = c.Sealed
		s.mu.ckptBytes += len(c.Sealed) - len(old)
	}
	return ckptResp{}, nil
}

// loadCheckpoint hands out an item's newest checkpoint, if there is one.
func (s *Scheduler) loadCheckpoint(ctx context.Context, from string, req *resumeReq) (resumeResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.mu.jobs[req.Job]; j != nil {
		return resumeResp{Sealed: j.ckpts[req.Index]}, nil
	}
	return resumeResp{}, nil
}

// dropCheckpointLocked forgets an item's checkpoint.
func (s *Scheduler) dropCheckpointLocked(j *job, idx uint64) {
	if c, ok := j.ckpts[idx]; ok {
		s.mu.ckptBytes -= len(c)
		delete(j.ckpts, idx)
	}
}
