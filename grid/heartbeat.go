package grid

import (
	"slices"
	"time"

	"github.com/gridnode/gridnode/transport"
)

// outgoing is one heartbeat ready to send, built under the lock and sent
// outside it.
type outgoing struct {
	addr string
	hb   heartbeat
	push bool // the inventory delta did not fit: push the rest by stream
	to   *peer
}

// heartbeatLoop sends heartbeats every interval, judges the silence of the
// watched peers and reports the ones it finds dead. It never waits on the
// network: sends are datagrams on connections the pool keeps.
func (c *Cluster) heartbeatLoop() {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	var lastReport, lastPrune time.Time
	reporting := make(chan struct{}, 1)
	reporting <- struct{}{}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		now := time.Now()
		out, dead := c.tick(now)
		for _, o := range out {
			c.send(o)
		}
		if len(dead) > 0 && now.Sub(lastReport) >= c.cfg.ReportInterval {
			select {
			case <-reporting:
				lastReport = now
				c.wg.Go(func() {
					defer func() { reporting <- struct{}{} }()
					c.report(dead)
				})
			default:
			}
		}
		if now.Sub(lastPrune) >= time.Second {
			lastPrune = now
			c.inv.Prune(now) // walks every entry: not every round
		}
	}
}

// tick advances the detectors and builds this round's heartbeats.
func (c *Cluster) tick(now time.Time) (out []outgoing, dead []Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.lastTick.IsZero() {
		c.mu.health = c.mu.health.Tick(c.cfg.Detector, c.mu.lastTick.Add(c.cfg.Interval), now)
	}
	c.mu.lastTick = now
	if c.mu.left {
		return nil, nil
	}
	v := c.mu.view
	self := c.mu.self

	// Who we watch: the topology's targets. Who we send to: those, the
	// peers whose inventory we follow or who follow ours, and a few random
	// members so that epochs and leases spread in a few rounds in a large
	// cluster.
	targets, observers, live := c.topologyLocked()
	watched := make(map[string]bool, len(targets))
	for _, id := range targets {
		watched[id] = true
	}
	// Heartbeats go to our observers (who judge us) and our targets (so a
	// target whose view lags still hears from us and catches up).
	send := slices.Clone(targets)
	for _, id := range observers {
		if !watched[id] {
			send = append(send, id)
		}
	}
	for id, p := range c.mu.peers {
		if !watched[id] && (p.watchers > 0 || now.Before(p.wantUntil)) && !slices.Contains(send, id) {
			send = append(send, id)
		}
	}
	if len(live) > FullMeshLimit {
		for range gossipFanout {
			id := live[c.mu.rng.IntN(len(live))]
			if id != self.NodeID && !slices.Contains(send, id) {
				send = append(send, id)
			}
		}
	}

	// Judge the watched peers.
	stretch := c.mu.health.Multiplier()
	suspects := 0
	for _, id := range targets {
		p := c.peerLocked(id)
		if !p.watched {
			p.watched, p.watchSince, p.heardSinceWatch = true, now, false
			p.det = NewPeerDetector(c.cfg.Detector, now)
		}
		if p.judged(now) && p.det.Verdict(c.cfg.Detector, now, stretch) != VerdictAlive {
			suspects++
		}
	}
	if Crisis(c.cfg.Detector, suspects, len(targets)) {
		stretch *= CrisisStretch(c.cfg.Detector)
	}
	c.mu.stretch = stretch
	for id, p := range c.mu.peers {
		if !watched[id] {
			p.watched = false
			p.verdict = VerdictAlive
			continue
		}
		verdict := VerdictAlive
		if p.judged(now) {
			verdict = p.det.Verdict(c.cfg.Detector, now, stretch)
		}
		if verdict != p.verdict {
			switch verdict {
			case VerdictSuspect:
				c.metric.suspected()
				c.log.Debug("suspect", "peer", id, "silence", p.det.Silence(now).Round(time.Millisecond))
			case VerdictDead:
				c.log.Info("peer looks dead; reporting", "peer", id, "silence", p.det.Silence(now).Round(time.Millisecond), "timeout", p.det.Timeout(c.cfg.Detector).Round(time.Millisecond))
			}
			p.verdict = verdict
		}
		if verdict == VerdictDead && c.mu.joined && !c.mu.health.Starved() {
			dead = append(dead, Member{NodeID: id, Incarnation: p.inc})
		}
	}

	// Build the heartbeats.
	running, free := c.cfg.Load()
	leaseAge := int64(-1)
	if c.quorumLocked(now) == nil {
		leaseAge = now.Sub(c.mu.leaseSince).Milliseconds()
	}
	invVersion, invDigest := c.inv.Version()
	digest := c.digestLocked()
	for _, id := range send {
		p := c.peerLocked(id)
		if p.addr == "" {
			continue
		}
		hb := heartbeat{
			From: self.NodeID, Inc: self.Incarnation, To: id,
			Epoch: v.Epoch, Digest: digest,
			Load: uint32(max(running, 0)), Free: uint32(max(free, 0)),
			LeaseAge: leaseAge, Leader: c.mu.leader,
			Want:       p.watchers > 0,
			InvVersion: invVersion, InvDigest: invDigest,
		}
		if p.inv.Incarnation == p.inc && p.inc != 0 {
			hb.Ack, hb.AckInc = p.inv.Version, p.inc
		}
		o := outgoing{addr: p.addr, to: p}
		if now.Before(p.wantUntil) && p.ackedMine < invVersion {
			entries, to, complete, ok := c.inv.Delta(p.ackedMine, heartbeatBytes-256-len(self.NodeID)-len(id)-len(c.mu.leader))
			if ok && len(entries) > 0 {
				hb.InvFrom, hb.InvTo, hb.Inv = p.ackedMine, to, entries
			}
			o.push = (!ok || !complete) && !p.pushing
		}
		o.hb = hb
		out = append(out, o)
	}
	return out, dead
}

// send sends one heartbeat, and starts an inventory push when the delta
// did not fit.
func (c *Cluster) send(o outgoing) {
	b, err := transport.Marshal(o.hb)
	if err == nil && len(b) > transport.MaxDatagramSize {
		o.hb.Inv, o.hb.InvFrom, o.hb.InvTo = nil, 0, 0
		o.push = true
		b, err = transport.Marshal(o.hb)
	}
	if err != nil {
		c.log.Error("cannot encode a heartbeat", "err", err)
		return
	}
	if cl := c.pool.ready(o.addr); cl != nil {
		if err := cl.Conn().SendDatagram(b); err == nil {
			c.metric.sent()
		}
	}
	if o.push {
		c.mu.Lock()
		start := !o.to.pushing
		o.to.pushing = true
		c.mu.Unlock()
		if start {
			c.wg.Go(func() { c.pushInventory(o.to) })
		}
	}
}

// pushInventory sends a peer what did not fit its heartbeats: the delta
// since its acknowledgement, or everything.
func (c *Cluster) pushInventory(p *peer) {
	defer func() {
		c.mu.Lock()
		p.pushing = false
		c.mu.Unlock()
	}()
	c.mu.Lock()
	self, addr, since := c.mu.self, p.addr, p.ackedMine
	c.mu.Unlock()
	req := invPush{From: self.NodeID, Inc: self.Incarnation, FromVer: since}
	entries, to, _, ok := c.inv.Delta(since, transport.DefaultMaxFrame/2)
	if ok {
		_, req.Digest = c.inv.Version()
		req.ToVer, req.Entries = to, entries
	} else {
		req.Full = true
		req.Entries, req.ToVer, req.Digest = c.inv.Full()
	}
	var ack invAck
	if err := c.pool.call(c.ctx, addr, methodInv, req, &ack); err != nil {
		c.log.Debug("inventory push failed", "peer", p.id, "err", err)
		return
	}
	c.mu.Lock()
	if p.ackedMine < req.ToVer {
		p.ackedMine = req.ToVer
	}
	c.mu.Unlock()
}

// onDatagram handles a heartbeat from any connection.
func (c *Cluster) onDatagram(conn transport.Conn, b []byte) {
	var hb heartbeat
	if err := transport.Unmarshal(b, &hb); err != nil {
		c.log.Debug("dropping a malformed heartbeat", "peer", conn.Peer().String(), "err", err)
		return
	}
	// The certificate, not the message, says who is speaking.
	if conn.Peer().Role != transport.RoleNode || conn.Peer().ID != hb.From {
		c.log.Debug("dropping a heartbeat whose sender does not match its certificate", "peer", conn.Peer().String(), "from", hb.From)
		return
	}
	c.metric.received()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if hb.To != c.mu.self.NodeID || c.mu.left {
		return
	}
	v := c.mu.view
	m, known := v.Member(hb.From)
	if known && hb.Inc <= m.Incarnation && m.State != Alive {
		// A node we hold dead (or gone) speaks: tell it, by answering with
		// our heartbeat, whose epoch makes it fetch the view and see.
		p := c.peerLocked(hb.From)
		if now.Sub(p.notice) >= noticeEvery {
			p.notice = now
			addr := m.Addr
			if addr == "" {
				addr = conn.RemoteAddr()
			}
			c.wg.Go(func() { c.notifyDead(addr, hb.From) })
		}
		return
	}
	p := c.peerLocked(hb.From)
	switch {
	case hb.Inc < p.inc:
		return // an old incarnation's heartbeat, still in flight
	case hb.Inc > p.inc:
		p.inc = hb.Inc
		p.inv = PeerInventory{}
		p.ackedMine = 0
		if p.watched {
			p.det = NewPeerDetector(c.cfg.Detector, now)
		}
	}
	if p.watched {
		p.det = p.det.Observe(c.cfg.Detector, now)
		p.heardSinceWatch = true
	}
	p.heard, p.epoch, p.load, p.free = now, hb.Epoch, hb.Load, hb.Free
	if hb.Want {
		p.wantUntil = now.Add(wantTTL)
	}
	if hb.AckInc == c.mu.self.Incarnation {
		p.ackedMine = hb.Ack
	} else {
		p.ackedMine = 0
	}

	// The inventory delta, checked against the sender's digest once whole.
	if p.watchers > 0 {
		if p.inv.Incarnation != hb.Inc {
			p.inv = PeerInventory{Incarnation: hb.Inc}
		}
		if hb.InvTo > 0 {
			if next, ok := p.inv.applyDelta(hb.Inc, hb.InvFrom, hb.InvTo, hb.Inv); ok {
				p.inv = next
			} else {
				p.inv = PeerInventory{Incarnation: hb.Inc} // ask for all of it: Ack 0
			}
		}
		if p.inv.Version == hb.InvVersion && p.inv.Digest != hb.InvDigest {
			c.log.Debug("inventory digest mismatch; asking for a full copy", "peer", hb.From)
			p.inv = PeerInventory{Incarnation: hb.Inc}
		}
	}

	// Lease: the sender's word about the leader counts if our view is at
	// least as new as the one it came with.
	if hb.LeaseAge >= 0 && hb.Epoch <= v.Epoch && c.mu.joined {
		if since := now.Add(-time.Duration(hb.LeaseAge) * time.Millisecond); since.After(c.mu.leaseSince) {
			c.mu.leaseSince = since
		}
	}
	if hb.Leader != "" && hb.Epoch >= v.Epoch && !c.mon.isLeader() {
		if r := c.mon.raft(); r == nil {
			c.mu.leader = hb.Leader
		}
	}
	if hb.Epoch > v.Epoch || (hb.Epoch == v.Epoch && hb.Digest != c.digestLocked()) {
		addr := p.addr
		if addr == "" {
			addr = conn.RemoteAddr()
		}
		select {
		case c.syncCh <- addr:
		default:
		}
	}
}

// notifyDead answers a node that the cluster holds dead with one heartbeat
// carrying our epoch: it will fetch the view and find itself dead.
func (c *Cluster) notifyDead(addr, id string) {
	c.mu.Lock()
	v, self := c.mu.view, c.mu.self
	c.mu.Unlock()
	b, err := transport.Marshal(heartbeat{From: self.NodeID, Inc: self.Incarnation, To: id, Epoch: v.Epoch, Digest: v.Digest(), LeaseAge: -1})
	if err != nil {
		return
	}
	if cl := c.pool.ready(addr); cl != nil {
		cl.Conn().SendDatagram(b)
	}
}

// syncLoop fetches newer views from the peers that announced them.
func (c *Cluster) syncLoop() {
	for {
		var addr string
		select {
		case <-c.ctx.Done():
			return
		case addr = <-c.syncCh:
		}
		if c.syncFrom(addr) != nil && !c.isMemberAddr(addr) {
			// The announcing peer is not in our view, and the address its
			// connection came from may not be one it listens on (it dialled
			// from elsewhere): ask the leader, the monitors, the join
			// addresses instead.
			for _, a := range c.contactAddrs() {
				if a != addr && c.syncFrom(a) == nil {
					break
				}
			}
		}
	}
}

// syncFrom brings the view up to date from the node at addr.
func (c *Cluster) syncFrom(addr string) error {
	c.mu.Lock()
	since := c.mu.view.Epoch
	c.mu.Unlock()
	for _, ask := range []uint64{since, 0} {
		var resp viewResponse
		if err := c.pool.call(c.ctx, addr, methodView, viewRequest{Since: ask}, &resp); err != nil {
			c.log.Debug("view sync failed", "from", addr, "err", err)
			return err
		}
		c.mu.Lock()
		ok := c.applyViewResponseLocked(since, resp)
		c.mu.Unlock()
		if ok {
			break
		}
	}
	return nil
}

// isMemberAddr reports whether addr is where a member of our view listens.
func (c *Cluster) isMemberAddr(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.mu.view.Members, func(m Member) bool { return m.Addr == addr })
}

// applyViewResponseLocked installs a fetched view or replays fetched
// changes, each through the same transition function the monitors use.
// It reports false when the changes do not apply: ask for the whole view.
func (c *Cluster) applyViewResponseLocked(since uint64, resp viewResponse) bool {
	if resp.Leader != "" && c.mon.raft() == nil {
		c.mu.leader = resp.Leader
	}
	if resp.View != nil {
		c.setViewLocked(*resp.View, nil)
		return true
	}
	if c.mu.view.Epoch != since {
		return true // moved on meanwhile; the next heartbeat will tell
	}
	v := c.mu.view
	for _, ch := range resp.Changes {
		if ch.Epoch != v.Epoch+1 {
			c.log.Debug("view sync: changes out of order", "have", v.Epoch, "got", ch.Epoch)
			return false
		}
		next, err := Apply(v, ch)
		if err != nil || next.Epoch != ch.Epoch {
			c.log.Warn("view sync: a committed change does not apply here; fetching the whole view", "change", ch.String(), "err", err)
			return false
		}
		v = next
	}
	c.setViewLocked(v, resp.Changes)
	return true
}
