package grid

import (
	"time"
)

// MemberStatus is one member as this node sees it.
type MemberStatus struct {
	Member
	Self    bool
	Leader  bool          // the monitors' leader, as this node last heard
	Watched bool          // this node runs a detector for it
	Suspect bool          // its silence is past the detector's timeout
	Heard   time.Duration // since its last heartbeat; -1 never
	Timeout time.Duration // the detector's current timeout for it
	Load    int           // running executions, from its heartbeats
	Free    int           // free execution slots, from its heartbeats
}

// Status is this node's picture of the cluster, for `gridnode members`.
type Status struct {
	NodeID      string
	Incarnation uint64
	Epoch       uint64
	Leader      string
	Joined      bool
	Quorum      error         // nil, or why this node holds no quorum
	LeaseAge    time.Duration // since the leader last held a majority, as this node knows; -1 never
	Health      int           // 0 healthy; higher when this node itself runs late
	Members     []MemberStatus

	HeartbeatsSent, HeartbeatsReceived int64
	Suspicions, Undead                 int64
}

// Status returns this node's picture of the cluster now.
func (c *Cluster) Status() Status {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		NodeID: c.mu.self.NodeID, Incarnation: c.mu.self.Incarnation,
		Epoch: c.mu.view.Epoch, Leader: c.mu.leader, Joined: c.mu.joined,
		Quorum: c.quorumLocked(now), LeaseAge: -1, Health: c.mu.health.Score(),
		HeartbeatsSent: c.metric.hbSent.Load(), HeartbeatsReceived: c.metric.hbReceived.Load(),
		Suspicions: c.metric.suspicions.Load(), Undead: c.metric.undeadCount.Load(),
	}
	if !c.mu.leaseSince.IsZero() {
		st.LeaseAge = now.Sub(c.mu.leaseSince)
	}
	for _, m := range c.mu.view.Members {
		ms := MemberStatus{Member: m, Self: m.NodeID == c.mu.self.NodeID, Leader: m.NodeID == c.mu.leader, Heard: -1}
		if ms.Self {
			running, free := c.cfg.Load()
			ms.Load, ms.Free, ms.Heard = running, free, 0
		}
		if p, ok := c.mu.peers[m.NodeID]; ok {
			if !p.heard.IsZero() {
				ms.Heard = now.Sub(p.heard)
			}
			ms.Load, ms.Free = int(p.load), int(p.free)
			if p.watched {
				ms.Watched = true
				ms.Timeout = p.det.Timeout(c.cfg.Detector)
				ms.Suspect = p.verdict != VerdictAlive
			}
		}
		st.Members = append(st.Members, ms)
	}
	return st
}
