package grid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gridnode/gridnode/transport"
)

// ErrNoQuorum is returned while a node cannot renew its view with the
// monitors' majority: it stops committing and refuses new jobs.
var ErrNoQuorum = errors.New("grid: no quorum")

// Config configures a cluster member. The zero value of each field means its
// default; Self, Network and Server are required.
type Config struct {
	// DataDir keeps the node's last view and, on monitors, the consensus
	// log. "" keeps nothing (simulations only).
	DataDir string
	// Self is this node: NodeID, Incarnation, advertised Addr, Labels, Slots.
	Self Member
	// Join lists addresses of members to join through. Empty, with no
	// earlier view in DataDir, founds a new cluster.
	Join []string
	// Monitors is how many monitors the cluster keeps: 1, 3 or 5. Default 3.
	Monitors int
	// Interval between heartbeats. Default 100ms.
	Interval time.Duration
	// Detector tunes failure detection; its Interval follows Interval.
	Detector DetectorConfig
	// LeaseTimeout is how long a node keeps committing without word from
	// the monitors' leader. Default 3s.
	LeaseTimeout time.Duration
	// ReportInterval is how often local verdicts are resent. Default 200ms.
	ReportInterval time.Duration
	Raft           RaftConfig
	// Load reports running executions and free slots for heartbeats.
	Load func() (running, free int)
	// Incarnate is called when the node must rejoin under a new incarnation
	// (it was declared dead): it returns the next incarnation, stored
	// durably. Default: one more than the current, kept in memory.
	Incarnate func() (uint64, error)
	Network   transport.Network
	Server    *transport.Server
	Logger    *slog.Logger
	// Seed feeds the choice of gossip peers; 0 picks one at random.
	Seed uint64
}

func (c Config) withDefaults() (Config, error) {
	if err := ValidNodeID(c.Self.NodeID); err != nil {
		return c, err
	}
	if c.Self.Incarnation == 0 || c.Self.Addr == "" {
		return c, fmt.Errorf("grid: Self needs an incarnation and an advertised address")
	}
	if c.Network == nil || c.Server == nil {
		return c, fmt.Errorf("grid: Network and Server are required")
	}
	switch c.Monitors {
	case 0:
		c.Monitors = 3
	case 1, 3, 5:
	default:
		return c, fmt.Errorf("grid: %d monitors: use 1, 3 or 5", c.Monitors)
	}
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	c.Detector.Interval = c.Interval
	c.Detector = c.Detector.withDefaults()
	if c.LeaseTimeout <= 0 {
		c.LeaseTimeout = 3 * time.Second
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = 200 * time.Millisecond
	}
	c.Raft = c.Raft.withDefaults()
	if c.Load == nil {
		c.Load = func() (int, int) { return 0, c.Self.Slots }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	c.Self.State = Alive
	c.Self.Monitor = false
	c.Join = slices.Clone(c.Join)
	return c, nil
}

// Timing of the protocol around the detector.
const (
	reportTTL      = time.Second     // a report counts this long at the leader
	wantTTL        = 3 * time.Second // a peer watching our inventory is served this long
	noticeEvery    = time.Second     // at most one "you are dead" per peer per second
	reconcileEvery = 500 * time.Millisecond
	gossipFanout   = 2
	watchGrace     = 2 * time.Second
	heartbeatBytes = transport.MaxDatagramSize
)

// Cluster is this node's membership in the grid: its view, its failure
// detector, its heartbeats and, on monitors, the consensus that holds the
// authoritative view.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	inv    *Inventory
	pool   *pool
	mon    *monitor
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // heartbeat now
	syncCh chan string   // addresses to fetch a newer view from
	joinCh chan struct{} // start (re)joining
	metric *metrics

	mu struct {
		sync.Mutex
		self       Member
		view       View
		changes    []Change // recent committed changes, oldest first
		viewCh     chan struct{}
		joined     bool
		leaving    bool
		left       bool
		peers      map[string]*peer
		health     Health
		leaseSince time.Time // local time the leader last held a majority
		leader     string    // node ID of the monitors' leader, as last heard
		reports    map[string]*reportSet
		rng        *rand.Rand
		lastTick   time.Time
		stretch    float64 // the factor this round's verdicts used (see Stretch)
		derived    viewDerived
	}
}

// viewDerived is what heartbeats need of the view every round, computed on
// first use after each change: the view changes rarely, and in a large
// cluster its digest and ring cost far more than a heartbeat.
type viewDerived struct {
	digestOK  bool
	digest    uint64
	topoOK    bool
	targets   []string // read-only: shared by every round until the view changes
	observers []string
	live      []string
}

func (c *Cluster) digestLocked() uint64 {
	d := &c.mu.derived
	if !d.digestOK {
		d.digest, d.digestOK = c.mu.view.Digest(), true
	}
	return d.digest
}

// topologyLocked returns this node's targets and observers in the current
// view, and the live members' IDs. The slices must not be modified.
func (c *Cluster) topologyLocked() (targets, observers, live []string) {
	d := &c.mu.derived
	if !d.topoOK {
		v, self := c.mu.view, c.mu.self.NodeID
		d.targets, d.observers = Targets(v, self), Observers(v, self)
		d.live = d.live[:0]
		for _, m := range v.Members {
			if m.Live() {
				d.live = append(d.live, m.NodeID)
			}
		}
		d.topoOK = true
	}
	return d.targets, d.observers, d.live
}

// peer is what this node knows about another member from its heartbeats.
type peer struct {
	id, addr string
	inc      uint64
	det      PeerDetector
	watched  bool // a target: its silence is judged
	// watchSince and heardSinceWatch: a new target is judged only once it
	// has spoken, or after watchGrace, since its view may lag ours.
	watchSince      time.Time
	heardSinceWatch bool
	heard           time.Time
	epoch           uint64
	load, free      uint32
	inv             PeerInventory
	ackedMine       uint64    // version of our inventory the peer holds
	wantUntil       time.Time // the peer watches our inventory until then
	watchers        int       // local interest in the peer's inventory
	notice          time.Time // last "you are dead" sent
	pushing         bool      // an inventory push to it is in flight
	verdict         Verdict
}

func (p *peer) judged(now time.Time) bool {
	return p.heardSinceWatch || now.Sub(p.watchSince) >= watchGrace
}

// reportSet is the leader's tally of reports about one member.
type reportSet struct {
	inc   uint64
	first time.Time
	from  map[string]time.Time
}

// Start joins (or founds) the cluster and runs the node's part of the
// membership protocol until Close. It returns once the handlers are in
// place; joining continues in the background and Status says how far it got.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg: cfg, log: cfg.Logger, inv: NewInventory(),
		kick: make(chan struct{}, 1), syncCh: make(chan string, 16), joinCh: make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.mu.self = cfg.Self
	c.mu.viewCh = make(chan struct{})
	c.mu.peers = make(map[string]*peer)
	c.mu.reports = make(map[string]*reportSet)
	c.mu.rng = rand.New(rand.NewPCG(cfg.Seed, 0x6772696467726964))
	c.metric = newMetrics(c)
	c.pool = newPool(c.ctx, cfg.Network, c.onDatagram)
	c.mon = &monitor{
		id: cfg.Self.NodeID, addr: cfg.Self.Addr, cfg: cfg.Raft, log: c.log,
		fsm: &fsm{committed: c.committed},
		open: func(ctx context.Context, addr string) (transport.Stream, error) {
			cl, err := c.pool.get(ctx, addr)
			if err != nil {
				return nil, err
			}
			return cl.OpenRaw(ctx, raftMethod)
		},
	}
	if cfg.DataDir != "" && !cfg.Raft.InMemory {
		c.mon.dir = filepath.Join(cfg.DataDir, "grid")
	}
	if saved, err := c.loadView(); err != nil {
		c.log.Warn("ignoring the saved view", "err", err)
	} else if saved != nil {
		c.mu.view = *saved
	}
	c.registerHandlers()

	founding := len(cfg.Join) == 0 && len(c.mu.view.Members) == 0 && !c.mon.hasState()
	if c.mon.hasState() || founding {
		if err := c.mon.start(founding); err != nil {
			c.cancel()
			return nil, err
		}
	}
	c.wg.Go(c.heartbeatLoop)
	c.wg.Go(c.leaderLoop)
	c.wg.Go(c.joinLoop)
	c.wg.Go(c.syncLoop)
	c.requestJoin()
	return c, nil
}

// Close stops the node's part of the protocol without leaving: to the
// others it looks like a crash. Use Leave first for a controlled exit.
func (c *Cluster) Close() error {
	c.cancel()
	c.mon.close() // no goroutine or handler can start it again
	c.wg.Wait()
	c.pool.close()
	c.metric.close()
	return nil
}

// Inventory is this node's own executions, which its heartbeats carry to
// the peers that watch it.
func (c *Cluster) Inventory() *Inventory { return c.inv }

// View returns the current view and a channel closed when it changes.
func (c *Cluster) View() (View, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.view, c.mu.viewCh
}

// Self returns this node as the cluster knows it now (the incarnation
// grows when it rejoins).
func (c *Cluster) Self() Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.self
}

// Quorum returns nil while this node holds a fresh view from the monitors'
// majority, and an error wrapping ErrNoQuorum that says why otherwise.
func (c *Cluster) Quorum() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quorumLocked(time.Now())
}

func (c *Cluster) quorumLocked(now time.Time) error {
	switch {
	case c.mu.left:
		return fmt.Errorf("%w: this node left the cluster", ErrNoQuorum)
	case c.mu.leaving:
		return fmt.Errorf("%w: this node is leaving the cluster", ErrNoQuorum)
	case !c.mu.joined:
		if c.metric.undeadCount.Load() > 0 {
			return fmt.Errorf("%w: this node was declared dead and is rejoining as incarnation %d", ErrNoQuorum, c.mu.self.Incarnation)
		}
		return fmt.Errorf("%w: this node has not joined the cluster yet", ErrNoQuorum)
	case c.mu.leaseSince.IsZero():
		return fmt.Errorf("%w: no word yet from the monitors' leader", ErrNoQuorum)
	}
	if age := now.Sub(c.mu.leaseSince); age > c.cfg.LeaseTimeout {
		return fmt.Errorf("%w: no word from the monitors' majority for %s (cut off from them, or they lost their majority); this node stops committing until it hears from them", ErrNoQuorum, age.Round(100*time.Millisecond))
	}
	return nil
}

// WaitQuorum waits until this node holds a quorum, or ctx ends.
func (c *Cluster) WaitQuorum(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		err := c.Quorum()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-c.ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// WatchInventory makes this node follow peer id's inventory (the peer
// sends it along with its heartbeats) until the returned func is called.
func (c *Cluster) WatchInventory(id string) (stop func()) {
	c.mu.Lock()
	p := c.peerLocked(id)
	p.watchers++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if p := c.mu.peers[id]; p != nil && p.watchers > 0 {
				p.watchers--
			}
			c.mu.Unlock()
		})
	}
}

// PeerInventory returns this node's copy of peer id's inventory.
func (c *Cluster) PeerInventory(id string) (PeerInventory, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.mu.peers[id]
	if !ok || p.inv.Incarnation == 0 {
		return PeerInventory{}, false
	}
	return p.inv, true
}

// peerLocked returns the peer record for id, creating it.
func (c *Cluster) peerLocked(id string) *peer {
	p, ok := c.mu.peers[id]
	if !ok {
		p = &peer{id: id}
		if m, found := c.mu.view.Member(id); found {
			p.addr, p.inc = m.Addr, m.Incarnation
		}
		c.mu.peers[id] = p
	}
	return p
}

// requestJoin wakes the join loop.
func (c *Cluster) requestJoin() {
	select {
	case c.joinCh <- struct{}{}:
	default:
	}
}

func (c *Cluster) kickHeartbeat() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// ---- view changes ----

// committed is called by the monitors' state machine for every change.
func (c *Cluster) committed(v View, ch Change) {
	c.mu.Lock()
	if ch.Kind != 0 {
		c.setViewLocked(v, []Change{ch})
	} else {
		c.setViewLocked(v, nil)
	}
	c.mu.Unlock()
	c.kickHeartbeat()
}

// setViewLocked installs v if it is newer, with the changes that led to it
// (nil when unknown), and draws the consequences for this node.
func (c *Cluster) setViewLocked(v View, changes []Change) {
	if v.Epoch <= c.mu.view.Epoch && len(c.mu.view.Members) > 0 {
		return
	}
	old := c.mu.view
	c.mu.view = v.Clone()
	c.mu.derived = viewDerived{}
	if changes == nil || (len(changes) > 0 && changes[0].Epoch != old.Epoch+1) {
		c.mu.changes = nil
	}
	c.mu.changes = append(c.mu.changes, changes...)
	if n := len(c.mu.changes); n > recentChanges {
		c.mu.changes = slices.Delete(c.mu.changes, 0, n-recentChanges)
	}
	close(c.mu.viewCh)
	c.mu.viewCh = make(chan struct{})
	for _, ch := range changes {
		c.log.Info("epoch", "epoch", ch.Epoch, "change", ch.String())
	}
	if changes == nil {
		c.log.Info("view", "epoch", v.Epoch, "members", len(v.Members))
	}
	c.metric.epoch(v.Epoch)
	c.saveViewLocked()

	// Peers follow the view: new addresses, new incarnations, the gone.
	for id, p := range c.mu.peers {
		m, ok := v.Member(id)
		switch {
		case !ok:
			if p.watchers == 0 {
				delete(c.mu.peers, id)
			}
		case m.Incarnation > p.inc || m.Addr != p.addr:
			// A new incarnation is a new process, perhaps at the same
			// address: the connection to the old one is dead weight.
			if p.addr != "" {
				c.pool.drop(p.addr)
			}
			p.addr, p.inc = m.Addr, m.Incarnation
		case !m.Live() && p.inc == m.Incarnation && p.addr != "":
			c.pool.drop(p.addr)
		}
	}
	for id, r := range c.mu.reports {
		if m, ok := v.Member(id); !ok || !m.Live() || m.Incarnation != r.inc {
			delete(c.mu.reports, id)
		}
	}

	me, found := v.Member(c.mu.self.NodeID)
	switch {
	case !found || me.Incarnation < c.mu.self.Incarnation:
		c.mu.joined = false
	case me.Incarnation > c.mu.self.Incarnation:
		// The cluster knows a newer us: another process runs with our node
		// ID, or our incarnation file was lost. Rejoin above it.
		c.log.Error("the cluster knows a newer incarnation of this node ID; is another node running with it?", "ours", c.mu.self.Incarnation, "theirs", me.Incarnation)
		c.mu.self.Incarnation = me.Incarnation
		c.undeadLocked()
	case me.State == Alive:
		if !c.mu.joined {
			c.log.Info("joined", "epoch", v.Epoch, "incarnation", me.Incarnation, "members", len(v.Live()))
		}
		c.mu.joined = true
		if me.Monitor && !c.mu.leaving && c.mon.raft() == nil {
			// A monitor that rejoined (a restart without its consensus
			// state, or a replacement machine on a new address) keeps its
			// vote: run the peer, which the leader (following the address)
			// brings up to date.
			c.wg.Go(c.startMonitor)
		}
	case me.State == Left && c.mu.leaving:
		c.mu.joined, c.mu.left = false, true
	default: // declared dead (or recorded as left without asking)
		c.undeadLocked()
	}
}

// startMonitor starts the consensus peer of a node the view names as a
// monitor, unless the node is shutting down.
func (c *Cluster) startMonitor() {
	if c.ctx.Err() != nil {
		return
	}
	if err := c.mon.start(false); err != nil {
		c.log.Error("cannot start the consensus peer of this monitor", "err", err)
	}
}

// undeadLocked handles learning that the cluster declared this node dead:
// abandon what it runs, take a new incarnation and rejoin.
func (c *Cluster) undeadLocked() {
	c.mu.joined = false
	abandoned := c.inv.AbandonRunning()
	next := c.mu.self.Incarnation + 1
	if c.cfg.Incarnate != nil {
		inc, err := c.cfg.Incarnate()
		if err != nil {
			c.log.Error("cannot store a new incarnation; rejoining with one in memory", "err", err)
		} else {
			next = max(inc, next)
		}
	}
	c.log.Warn("this node was declared dead: abandoning its executions and rejoining", "abandoned", len(abandoned), "incarnation", next)
	c.mu.self.Incarnation = next
	c.mu.leaseSince = time.Time{}
	c.metric.undead()
	c.requestJoin()
}

// ---- join and leave ----

func (c *Cluster) joinLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.joinCh:
		}
		backoff := 100 * time.Millisecond
		lastWarn := time.Now()
		for {
			c.mu.Lock()
			done := c.mu.joined || c.mu.leaving || c.mu.left
			self := c.mu.self
			c.mu.Unlock()
			if done {
				break
			}
			err := c.joinOnce(self)
			c.mu.Lock()
			done = c.mu.joined || c.mu.leaving || c.mu.left
			c.mu.Unlock()
			if done {
				break
			}
			if err == nil {
				// Answered, but with a view that does not hold this
				// incarnation alive yet (an older view, a stale join):
				// never retry without a pause.
				err = fmt.Errorf("grid: the view received does not hold %s#%d alive yet", self.NodeID, self.Incarnation)
			}
			if time.Since(lastWarn) > 10*time.Second {
				c.log.Warn("cannot join the cluster yet; retrying", "err", err)
				lastWarn = time.Now()
			} else {
				c.log.Debug("join attempt failed", "err", err)
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// joinOnce asks the leader (directly, or through any member) to admit self.
func (c *Cluster) joinOnce(self Member) error {
	if c.mon.isLeader() {
		v, err := c.mon.apply(c.ctx, Change{Kind: ChangeJoin, Member: self})
		if err != nil && !errors.Is(err, ErrStale) {
			return err
		}
		c.mu.Lock()
		c.setViewLocked(v, nil)
		c.mu.Unlock()
		// Record the monitor set now rather than at the next round, so a
		// founding node is ready (and holds a lease) at once.
		if err := c.reconcileMonitors(); err != nil {
			c.log.Debug("monitor set", "err", err)
		}
		return nil
	}
	var errs []error
	for _, addr := range c.contactAddrs() {
		var resp viewResponse
		err := c.pool.call(c.ctx, addr, methodJoin, joinRequest{Member: self}, &resp)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if resp.View == nil {
			errs = append(errs, fmt.Errorf("%s: no view in the answer", addr))
			continue
		}
		c.mu.Lock()
		c.setViewLocked(*resp.View, nil)
		c.mu.leader = resp.Leader
		c.mu.Unlock()
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("grid: no address to join through: give --join ADDR")
	}
	return errors.Join(errs...)
}

// contactAddrs lists where to send join, leave and report calls: the
// leader first, then the other monitors, the join addresses, the members.
func (c *Cluster) contactAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	self := c.mu.self.NodeID
	add := func(a string) {
		if a != "" && a != c.mu.self.Addr && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	// Skip ourselves by node ID too: a saved view may hold our old address.
	if m, ok := c.mu.view.Member(c.mu.leader); ok && m.Live() && m.NodeID != self {
		add(m.Addr)
	}
	for _, m := range c.mu.view.Monitors() {
		if m.Live() && m.NodeID != self {
			add(m.Addr)
		}
	}
	for _, a := range c.cfg.Join {
		add(a)
	}
	for _, m := range c.mu.view.Live() {
		if m.NodeID != self {
			add(m.Addr)
		}
	}
	// Members we find silent go last: when the leader itself died, every
	// report would otherwise first wait out a call to it.
	silent := map[string]bool{}
	for _, p := range c.mu.peers {
		if p.watched && p.verdict != VerdictAlive && p.addr != "" {
			silent[p.addr] = true
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case !silent[a] && silent[b]:
			return -1
		case silent[a] && !silent[b]:
			return 1
		}
		return 0
	})
	return out
}

// Leave leaves the cluster on purpose: a monitor hands its vote over, the
// monitors record this node as "left", and the node stops. ctx bounds the
// wait; Close must still be called.
func (c *Cluster) Leave(ctx context.Context) error {
	c.mu.Lock()
	if c.mu.left {
		c.mu.Unlock()
		return nil
	}
	c.mu.leaving = true
	self := c.mu.self
	joined := c.mu.joined
	c.mu.Unlock()
	if !joined {
		c.mu.Lock()
		c.mu.left = true
		c.mu.Unlock()
		return nil
	}
	if c.mon.isLeader() {
		if r := c.mon.raft(); r != nil {
			if err := r.LeadershipTransfer().Error(); err != nil {
				c.log.Warn("could not hand leadership over before leaving", "err", err)
			}
		}
	}
	req := leaveRequest{NodeID: self.NodeID, Incarnation: self.Incarnation}
	for {
		err := c.leaveOnce(ctx, req)
		if err == nil {
			break
		}
		c.log.Debug("leave attempt failed", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("grid: leave: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// A monitor waits (a few seconds at most) until the others have
	// replaced it, so the consensus does not count on a node that is gone
	// longer than it must. Its own consensus peer may never hear that it
	// was voted out (the leader stops talking to it), so ask the others.
	if c.mon.raft() != nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for !c.replaced(wctx, self.NodeID) {
			select {
			case <-wctx.Done():
				c.log.Warn("left, but the monitors did not confirm replacing this node's vote in time; they will")
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	c.log.Info("left the cluster")
	return nil
}

// replaced reports whether this node's consensus peer no longer votes:
// its own configuration says so, or a member's view names a full monitor
// set without it.
func (c *Cluster) replaced(ctx context.Context, self string) bool {
	isSelf := func(s raftServer) bool { return string(s.ID) == self }
	if servers, err := c.mon.voters(); err != nil || !slices.ContainsFunc(servers, isSelf) {
		return true
	}
	for _, addr := range c.contactAddrs() {
		var resp viewResponse
		if err := c.pool.call(ctx, addr, methodView, viewRequest{}, &resp); err != nil || resp.View == nil {
			continue
		}
		v := *resp.View
		mons := v.Monitors()
		want := DesiredMonitors(c.cfg.Monitors, len(v.Live()))
		return len(mons) >= want && !slices.ContainsFunc(mons, func(m Member) bool { return m.NodeID == self })
	}
	return false
}

func (c *Cluster) leaveOnce(ctx context.Context, req leaveRequest) error {
	var v View
	var err error
	if c.mon.isLeader() {
		v, err = c.mon.apply(ctx, Change{Kind: ChangeLeave, Member: Member{NodeID: req.NodeID, Incarnation: req.Incarnation}})
	} else {
		err = errNotLeader
		for _, addr := range c.contactAddrs() {
			var resp viewResponse
			if err = c.pool.call(ctx, addr, methodLeave, req, &resp); err == nil {
				if resp.View == nil {
					return fmt.Errorf("grid: leave: no view in the answer")
				}
				v = *resp.View
				break
			}
		}
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.setViewLocked(v, nil)
	left := c.mu.left
	c.mu.Unlock()
	if !left {
		return fmt.Errorf("grid: leave not yet recorded")
	}
	return nil
}

// ---- persistence of the last view (a hint for rejoining) ----

func (c *Cluster) viewPath() string { return filepath.Join(c.cfg.DataDir, "grid", "view.cbor") }

func (c *Cluster) loadView() (*View, error) {
	if c.cfg.DataDir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.viewPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v View
	if err := transport.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", c.viewPath(), err)
	}
	return &v, nil
}

func (c *Cluster) saveViewLocked() {
	if c.cfg.DataDir == "" {
		return
	}
	b, err := transport.Marshal(c.mu.view)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(c.viewPath()), 0o700); err == nil {
			err = writeFileSync(c.viewPath(), b)
		}
	}
	if err != nil {
		c.log.Warn("cannot save the view (only a hint for rejoining)", "err", err)
	}
}
