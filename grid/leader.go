package grid

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gridnode/gridnode/transport"
)

// leaderLoop does the monitors' leader's duties: grant the lease, declare
// the dead that a majority of their observers reported, keep the monitor
// set whole. On other monitors it only watches for being voted out.
func (c *Cluster) leaderLoop() {
	t := time.NewTicker(c.cfg.ReportInterval / 2)
	defer t.Stop()
	var lastReconcile time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		r := c.mon.raft()
		if r == nil {
			continue
		}
		if r.State() != raft.Leader {
			c.followerDuties(r)
			continue
		}
		// The lease: a round trip to a majority of monitors proves this
		// node still leads them at the time the round started.
		start := time.Now()
		if err := r.VerifyLeader().Error(); err != nil {
			continue
		}
		c.mu.Lock()
		// Grant only once the view shows this leader as a monitor: until
		// then the view is still being founded (or rejoined) and a node
		// holding it should not act as the cluster.
		if me, _ := c.mu.view.Member(c.cfg.Self.NodeID); start.After(c.mu.leaseSince) && c.mu.joined && me.Monitor {
			c.mu.leaseSince = start
		}
		c.mu.leader = c.cfg.Self.NodeID
		c.mu.Unlock()

		for _, m := range c.deathsDue(time.Now()) {
			if _, err := c.mon.apply(c.ctx, Change{Kind: ChangeDeath, Member: m}); err != nil && !errors.Is(err, ErrStale) {
				c.log.Warn("cannot declare a death", "node", m.NodeID, "err", err)
			} else if err == nil {
				c.metric.death()
			}
		}
		if time.Since(lastReconcile) >= reconcileEvery {
			lastReconcile = time.Now()
			if err := c.reconcileMonitors(); err != nil {
				c.log.Debug("monitor set", "err", err)
			}
		}
	}
}

// followerDuties: learn the leader, and stop a consensus peer that was
// voted out (it must not campaign with an old configuration).
func (c *Cluster) followerDuties(r *raft.Raft) {
	if _, id := r.LeaderWithID(); id != "" {
		c.mu.Lock()
		c.mu.leader = string(id)
		c.mu.Unlock()
	}
	if c.mon.runningFor() < 10*time.Second {
		return
	}
	servers, err := c.mon.voters()
	if err != nil {
		return
	}
	votedOut := !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == c.cfg.Self.NodeID })
	// A monitor voted out while it was down restarts with its old
	// configuration, which still lists it: the view (synced from members)
	// says otherwise, and no leader talks to it.
	c.mu.Lock()
	me, _ := c.mu.view.Member(c.cfg.Self.NodeID)
	stale := c.mu.joined && !me.Monitor
	c.mu.Unlock()
	if _, id := r.LeaderWithID(); votedOut || (stale && id == "") {
		c.log.Info("no longer a monitor")
		c.wg.Go(func() { c.mon.stop(true) })
	}
}

// deathsDue returns the members whose reports, from a majority of their
// observers, are fresh; in a crisis (many members reported at once) the
// reports must also have held for a stretch.
func (c *Cluster) deathsDue(now time.Time) []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.mu.view
	live := len(v.Live())
	reported := 0
	for id, rs := range c.mu.reports {
		for from, at := range rs.from {
			if now.Sub(at) > reportTTL {
				delete(rs.from, from)
			}
		}
		if len(rs.from) == 0 {
			delete(c.mu.reports, id)
			continue
		}
		reported++
	}
	crisis := Crisis(c.cfg.Detector, reported, live)
	var due []Member
	for id, rs := range c.mu.reports {
		m, ok := v.Member(id)
		if !ok || !m.Live() || m.Incarnation != rs.inc {
			delete(c.mu.reports, id)
			continue
		}
		obs := Observers(v, id)
		n := 0
		for _, o := range obs {
			if _, ok := rs.from[o]; ok {
				n++
			}
		}
		if n < ReportsNeeded(len(obs)) {
			continue
		}
		if crisis {
			wait := time.Duration(float64(c.cfg.Detector.MinTimeout) * CrisisStretch(c.cfg.Detector))
			if now.Sub(rs.first) < wait {
				continue
			}
		}
		due = append(due, Member{NodeID: id, Incarnation: m.Incarnation})
	}
	slices.SortFunc(due, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return due
}

// recordReportLocked counts one node's local verdicts at the leader.
func (c *Cluster) recordReportLocked(req reportRequest, now time.Time) {
	from, ok := c.mu.view.Member(req.From)
	if !ok || !from.Live() || from.Incarnation != req.FromInc {
		return // only live members of the view accuse
	}
	for _, d := range req.Dead {
		m, ok := c.mu.view.Member(d.NodeID)
		if !ok || !m.Live() || m.Incarnation != d.Incarnation || d.NodeID == req.From {
			continue
		}
		rs := c.mu.reports[d.NodeID]
		if rs == nil || rs.inc != d.Incarnation {
			rs = &reportSet{inc: d.Incarnation, first: now, from: map[string]time.Time{}}
			c.mu.reports[d.NodeID] = rs
		}
		rs.from[req.From] = now
	}
}

// report sends this node's verdicts to the leader (through any monitor).
func (c *Cluster) report(dead []Member) {
	c.mu.Lock()
	req := reportRequest{From: c.mu.self.NodeID, FromInc: c.mu.self.Incarnation, Epoch: c.mu.view.Epoch, Dead: dead}
	c.mu.Unlock()
	if c.mon.isLeader() {
		c.mu.Lock()
		c.recordReportLocked(req, time.Now())
		c.mu.Unlock()
		return
	}
	for _, addr := range c.contactAddrs() {
		// A report counts for reportTTL at the leader: one stuck on a
		// leader that is cut off (or paused) must not hold back the next
		// contact, which may lead already.
		ctx, cancel := context.WithTimeout(c.ctx, reportTTL/2)
		var resp reportResponse
		err := c.pool.call(ctx, addr, methodReport, req, &resp)
		cancel()
		if err == nil {
			if resp.Leader != "" {
				c.mu.Lock()
				c.mu.leader = resp.Leader
				c.mu.Unlock()
			}
			return
		}
		c.log.Debug("report failed", "to", addr, "err", err)
	}
}

// reconcileMonitors keeps the consensus group whole: vote out monitors
// that are dead or gone, follow address changes, add live members (on new
// hosts first) up to the desired count, and record the set in the view.
// One configuration change per call.
func (c *Cluster) reconcileMonitors() error {
	servers, err := c.mon.voters()
	if err != nil {
		return err
	}
	r := c.mon.raft()
	if r == nil {
		return errNotLeader
	}
	c.mu.Lock()
	v := c.mu.view
	c.mu.Unlock()
	var voters []string
	for _, s := range servers {
		id := string(s.ID)
		m, ok := v.Member(id)
		switch {
		case (!ok || !m.Live()) && id != c.cfg.Self.NodeID:
			c.log.Info("voting out a monitor", "node", id)
			return r.RemoveServer(s.ID, 0, 0).Error()
		case ok && m.Live() && m.Addr != string(s.Address):
			c.log.Info("monitor moved", "node", id, "addr", m.Addr)
			return r.AddVoter(s.ID, raft.ServerAddress(m.Addr), 0, 0).Error()
		}
		voters = append(voters, id)
	}
	if self, ok := v.Member(c.cfg.Self.NodeID); !ok || !self.Live() {
		return nil // the leader itself joins first (or is leaving)
	}
	want := DesiredMonitors(c.cfg.Monitors, len(v.Live()))
	if len(voters) < want {
		id, ok := PickMonitor(v, voters)
		if ok {
			m, _ := v.Member(id)
			ctx, cancel := context.WithTimeout(c.ctx, callTimeout)
			err := c.pool.call(ctx, m.Addr, methodMonitor, monitorRequest{Epoch: v.Epoch}, &monitorResponse{})
			cancel()
			if err != nil {
				return fmt.Errorf("grid: ask %s to become a monitor: %w", id, err)
			}
			c.log.Info("adding a monitor", "node", id)
			return r.AddVoter(raft.ServerID(id), raft.ServerAddress(m.Addr), 0, 0).Error()
		}
	}
	slices.Sort(voters)
	var flagged []string
	for _, m := range v.Monitors() {
		flagged = append(flagged, m.NodeID)
	}
	if !slices.Equal(voters, flagged) {
		_, err := c.mon.apply(c.ctx, Change{Kind: ChangeMonitors, Monitors: voters})
		return err
	}
	return nil
}

// ---- handlers ----

func (c *Cluster) registerHandlers() {
	s := c.cfg.Server
	s.HandleDatagrams(c.onDatagram)
	s.HandleRaw(raftMethod, func(ctx context.Context, peer transport.Peer, st transport.Stream) {
		if peer.Role != transport.RoleNode {
			st.Abort()
			return
		}
		c.mon.handle(ctx, peer, st)
	})
	s.Handle(methodJoin, nodeOnly(c.handleJoin))
	s.Handle(methodLeave, nodeOnly(c.handleLeave))
	s.Handle(methodReport, nodeOnly(c.handleReport))
	s.Handle(methodView, nodeOnly(c.handleView))
	s.Handle(methodInv, nodeOnly(c.handleInv))
	s.Handle(methodMonitor, nodeOnly(c.handleMonitor))
}

// nodeOnly refuses calls from anything but a node certificate.
func nodeOnly(h transport.HandlerFunc) transport.HandlerFunc {
	return func(ctx context.Context, call *transport.ServerCall) error {
		if call.Peer().Role != transport.RoleNode {
			return transport.Errorf(transport.CodeUnauthenticated, "%s is for nodes of the cluster; %s may not call it", call.Method(), call.Peer())
		}
		return h(ctx, call)
	}
}

const maxHops = 3

// forward passes a call on to the leader, when this node is not it.
func (c *Cluster) forward(ctx context.Context, method string, hops int, req, resp any) error {
	if hops >= maxHops {
		return transport.Errorf(transport.CodeUnavailable, "no monitors' leader reachable from here; retry")
	}
	var errs []error
	for _, addr := range c.contactAddrs() {
		err := c.pool.call(ctx, addr, method, req, resp)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if transport.CodeOf(err) == transport.CodeBadRequest {
			return err
		}
	}
	return transport.Errorf(transport.CodeUnavailable, "no monitors' leader reachable from here: %v", errors.Join(errs...))
}

func (c *Cluster) handleJoin(ctx context.Context, call *transport.ServerCall) error {
	var req joinRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	if !c.mon.isLeader() {
		req.Hops++
		var resp viewResponse
		if err := c.forward(ctx, methodJoin, req.Hops, req, &resp); err != nil {
			return err
		}
		return call.Send(resp)
	}
	v, err := c.mon.apply(ctx, Change{Kind: ChangeJoin, Member: req.Member})
	if err != nil {
		return applyError(err)
	}
	return call.Send(viewResponse{View: &v, Leader: c.cfg.Self.NodeID})
}

// applyError turns a failed commit into a wire error: leadership moved
// (retry elsewhere), or the change itself is refused.
func applyError(err error) error {
	if errors.Is(err, errNotLeader) {
		return transport.Errorf(transport.CodeUnavailable, "%v", err)
	}
	return transport.Errorf(transport.CodeBadRequest, "%v", err)
}

func (c *Cluster) handleLeave(ctx context.Context, call *transport.ServerCall) error {
	var req leaveRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	if !c.mon.isLeader() {
		req.Hops++
		var resp viewResponse
		if err := c.forward(ctx, methodLeave, req.Hops, req, &resp); err != nil {
			return err
		}
		return call.Send(resp)
	}
	v, err := c.mon.apply(ctx, Change{Kind: ChangeLeave, Member: Member{NodeID: req.NodeID, Incarnation: req.Incarnation}})
	if err != nil && !errors.Is(err, ErrStale) {
		return applyError(err)
	}
	if err != nil {
		v = c.mon.fsm.view()
	}
	return call.Send(viewResponse{View: &v, Leader: c.cfg.Self.NodeID})
}

func (c *Cluster) handleReport(ctx context.Context, call *transport.ServerCall) error {
	var req reportRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	if len(req.Dead) > 1024 {
		return transport.Errorf(transport.CodeTooLarge, "a report names %d nodes; at most 1024", len(req.Dead))
	}
	if !c.mon.isLeader() {
		req.Hops++
		var resp reportResponse
		if err := c.forward(ctx, methodReport, req.Hops, req, &resp); err != nil {
			return err
		}
		return call.Send(resp)
	}
	c.mu.Lock()
	c.recordReportLocked(req, time.Now())
	c.mu.Unlock()
	return call.Send(reportResponse{Leader: c.cfg.Self.NodeID})
}

// maxSyncChanges is the longest delta a view sync answers with; a node
// further behind gets the whole view. Replaying a change costs a copy of
// the view, so a long delta (a node that missed a burst of joins while a
// large cluster forms) costs more than decoding the view once.
const maxSyncChanges = 16

func (c *Cluster) handleView(ctx context.Context, call *transport.ServerCall) error {
	var req viewRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	c.mu.Lock()
	resp := viewResponse{Leader: c.mu.leader}
	v := c.mu.view
	if req.Since > 0 && req.Since < v.Epoch && v.Epoch-req.Since <= maxSyncChanges && len(c.mu.changes) > 0 && c.mu.changes[0].Epoch <= req.Since+1 {
		for _, ch := range c.mu.changes {
			if ch.Epoch > req.Since {
				resp.Changes = append(resp.Changes, ch)
			}
		}
	} else if req.Since < v.Epoch || req.Since == 0 {
		vc := v.Clone()
		resp.View = &vc
	}
	c.mu.Unlock()
	return call.Send(resp)
}

func (c *Cluster) handleInv(ctx context.Context, call *transport.ServerCall) error {
	var req invPush
	if err := call.Recv(&req); err != nil {
		return err
	}
	if req.From != call.Peer().ID {
		return transport.Errorf(transport.CodeBadRequest, "inventory of %s pushed by %s", req.From, call.Peer().ID)
	}
	c.mu.Lock()
	if p := c.mu.peers[req.From]; p != nil && p.watchers > 0 && req.Inc >= p.inc {
		if req.Full {
			p.inv = fullInventory(req.Inc, req.ToVer, req.Entries)
		} else if next, ok := p.inv.applyDelta(req.Inc, req.FromVer, req.ToVer, req.Entries); ok {
			p.inv = next
		} else {
			p.inv = PeerInventory{Incarnation: req.Inc}
		}
	}
	c.mu.Unlock()
	return call.Send(invAck{})
}

func (c *Cluster) handleMonitor(ctx context.Context, call *transport.ServerCall) error {
	var req monitorRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	c.mu.Lock()
	leaving := c.mu.leaving || c.mu.left
	c.mu.Unlock()
	if leaving {
		return transport.Errorf(transport.CodeUnavailable, "this node is leaving")
	}
	if err := c.mon.start(false); err != nil {
		return transport.Errorf(transport.CodeInternal, "start the consensus peer: %v", err)
	}
	return call.Send(monitorResponse{})
}
