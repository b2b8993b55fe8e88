package sched

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
	"go.opentelemetry.io/otel/metric"
)

// Version is the node's version, reported in NodeInfo.
var Version = "0.1.0-dev"

// Config configures a node. The zero value of every field means its default.
type Config struct {
	DataDir       string            // required: identity, TLS material, modules, compile cache, the job store
	ListenAddr    string            // default "127.0.0.1:7480"; use ":0" or "127.0.0.1:0" for any free port
	NodeID        string            // default: the one stored in DataDir, or a new random one
	Labels        map[string]string // failure domains, e.g. host=h1, zone=z1
	Slots         int               // concurrent executions; default GOMAXPROCS, plus one with process isolation
	Isolation     plugins.Isolation // default process: executions in supervised worker processes
	MaxLimits     plugins.Limits    // node-side maximums for jobs; zero fields: plugins' defaults (stdout capped to fit a frame)
	WorkerCommand []string          // how to start a worker process; default: this executable
	// Advertise is the address other nodes and clients dial; default the
	// listen address (a wildcard host becomes 127.0.0.1).
	Advertise string
	// Join lists members to join through. Empty founds a new cluster, or
	// rejoins the one this data dir's node belonged to.
	Join []string
	// Monitors is how many monitors the cluster keeps (1, 3 or 5); default 3.
	Monitors int
	// Cluster tunes membership; its Self, Join, Monitors, Network, Server
	// and Logger are filled in by the node.
	Cluster grid.Config
	// Network overrides the QUIC network (tests use transport's in-memory one).
	Network transport.Network
	Logger  *slog.Logger
}

// Node is one gridnode: it accepts jobs from clients, runs their items in
// its sandbox and serves their results.
type Node struct {
	cfg     Config
	id      grid.Identity
	dataDir string
	log     *slog.Logger
	creds   *transport.Credentials
	sandbox *plugins.Sandbox
	store   *Store
	sched   *Scheduler
	metrics *metrics
	gauges  metric.Registration
	srv     *transport.Server
	lis     transport.Listener
	cluster *grid.Cluster
	started time.Time
	left    chan struct{} // closed once the node left the cluster on request
	leaveMu sync.Mutex

	exec    *executor
	coord   *coordinator
	modules moduleFetcher
	ledger  ledger

	// ctx ends when the node stops; every goroutine the node starts is
	// in wg, and spawn refuses new ones once ctx ended.
	ctx      context.Context
	cancel   context.CancelFunc
	spawnMu  sync.Mutex
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// maxStdout keeps one result inside a results frame.
const maxStdout = 4 << 20

// StartNode opens the node's state in cfg.DataDir, recovers its jobs, and
// starts serving clients. Close stops it.
func StartNode(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("sched: a node needs a data dir")
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:7480"
	}
	if cfg.Isolation == "" {
		cfg.Isolation = plugins.Process
	}
	if cfg.Slots <= 0 {
		// With worker processes, each slot spends part of every item in the
		// round trip to its worker and in handing the outcome to the
		// committer; one slot more than cores keeps every core busy
		// meanwhile (workers run at a lower priority than the node, so the
		// extra slot does not starve it). Measured with 1 ms items on 2
		// cores: 0.72-0.74 of raw wazero with 2 slots, 0.77-0.80 with 3.
		cfg.Slots = runtime.GOMAXPROCS(0)
		if cfg.Isolation == plugins.Process {
			cfg.Slots++
		}
	}
	if cfg.MaxLimits.StdoutBytes == 0 || cfg.MaxLimits.StdoutBytes > maxStdout {
		cfg.MaxLimits.StdoutBytes = maxStdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, dataDir: cfg.DataDir, log: cfg.Logger, started: time.Now(), metrics: newMetrics(), left: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.modules.n = n
	n.ledger.init()
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.id, err = grid.LoadIdentity(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	n.log = n.log.With("node", n.id.NodeID)
	if n.creds, err = transport.LoadOrCreateNode(filepath.Join(cfg.DataDir, "tls"), n.id.NodeID); err != nil {
		return nil, err
	}
	if n.sandbox, err = plugins.Open(ctx, plugins.Config{
		Dir: filepath.Join(cfg.DataDir, "plugins"), Isolation: cfg.Isolation, Workers: cfg.Slots,
		WorkerCommand: cfg.WorkerCommand, Max: cfg.MaxLimits, Logger: n.log,
	}); err != nil {
		return nil, err
	}
	if n.store, err = OpenStore(filepath.Join(cfg.DataDir, "jobs.db")); err != nil {
		return nil, err
	}
	n.sched = newScheduler(n, n.store, n.log, n.metrics)
	n.exec = newExecutor(n, n.sandbox, cfg.Slots)
	n.coord = newCoordinator(n)
	if err := n.recover(); err != nil {
		return nil, err
	}
	if n.gauges, err = n.metrics.observeRunning(n.exec); err != nil {
		return nil, fmt.Errorf("sched: register gauges: %w", err)
	}

	network := cfg.Network
	if network == nil {
		network = transport.NewQUIC(n.creds, transport.QUICConfig{})
	}
	if n.lis, err = network.Listen(cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("sched: listen on %s: %w (is another node using that port? pick another with --listen)", cfg.ListenAddr, err)
	}
	n.srv = transport.NewServer(transport.ServerConfig{Logger: n.log})
	n.register(n.srv)
	n.registerPeers()
	if err := n.startCluster(ctx, network); err != nil {
		return nil, err
	}
	// Resumed jobs run from here; their commits wait while the node holds
	// no quorum (it may still be rejoining).
	n.sched.fence = n.cluster.Quorum
	n.sched.start()
	n.exec.start()
	n.spawn(n.coord.loop)
	n.spawn(n.ledgerLoop)
	n.spawn(func() {
		if err := n.srv.Serve(n.ctx, n.lis); err != nil && n.ctx.Err() == nil {
			n.log.Error("serving stopped", "err", err)
		}
	})
	n.spawn(func() { n.janitor(n.ctx) })
	n.log.Info("node started", "addr", n.lis.Addr(), "incarnation", n.id.Incarnation,
		"slots", cfg.Slots, "isolation", cfg.Isolation, "data", cfg.DataDir)
	return n, nil
}

// startCluster joins (or founds) the cluster this node belongs to.
func (n *Node) startCluster(ctx context.Context, network transport.Network) error {
	cc := n.cfg.Cluster
	cc.DataDir = n.cfg.DataDir
	cc.Self = grid.Member{
		NodeID: n.id.NodeID, Incarnation: n.id.Incarnation, Addr: advertiseAddr(n.cfg.Advertise, n.lis.Addr()),
		Labels: n.cfg.Labels, Slots: n.cfg.Slots,
	}
	cc.Join, cc.Monitors = n.cfg.Join, n.cfg.Monitors
	cc.Network, cc.Server, cc.Logger = network, n.srv, n.log
	cc.Load = n.exec.load
	cc.Incarnate = func() (uint64, error) {
		id, err := grid.LoadIdentity(n.cfg.DataDir, n.id.NodeID)
		return id.Incarnation, err
	}
	c, err := grid.Start(ctx, cc)
	if err != nil {
		return fmt.Errorf("sched: start cluster membership: %w", err)
	}
	n.cluster = c
	if len(cc.Join) == 0 {
		// A node that founds (or is alone in) its cluster is ready once its
		// own consensus has elected it: wait briefly so that a job submitted
		// right after start is not refused for want of a quorum.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.WaitQuorum(wctx); err != nil {
			n.log.Info("no quorum yet; serving anyway", "err", err)
		}
	}
	return nil
}

// advertiseAddr is what peers dial: the configured address, or the listen
// address with a wildcard host replaced by loopback.
func advertiseAddr(advertise, listen string) string {
	if advertise != "" {
		return advertise
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

// Cluster is the node's membership in the grid.
func (n *Node) Cluster() *grid.Cluster { return n.cluster }

// Leave leaves the cluster on purpose: the monitors record this node as
// left and hand its duties over; then Left is closed. The node keeps
// serving reads until Close.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.leaveCluster(ctx); err != nil {
		return err
	}
	n.markLeft()
	return nil
}

func (n *Node) leaveCluster(ctx context.Context) error {
	n.leaveMu.Lock()
	defer n.leaveMu.Unlock()
	n.handOver(ctx)
	return n.cluster.Leave(ctx)
}

func (n *Node) markLeft() {
	n.leaveMu.Lock()
	defer n.leaveMu.Unlock()
	select {
	case <-n.left:
	default:
		close(n.left)
	}
}

// Left is closed once the node has left the cluster (gridnode leave).
func (n *Node) Left() <-chan struct{} { return n.left }

// recover loads the stored jobs: the node holds a copy of each, and
// serves (as their home) those the ledger loop finds it is the home of,
// once it has gathered the other holders' copies. Half-received ones (the
// client never got an acknowledgement, or a copy was cut short) are
// dropped.
func (n *Node) recover() error {
	recs, err := n.store.Jobs()
	if err != nil {
		return err
	}
	running := 0
	for _, rec := range recs {
		if rec.State == stateReceiving {
			n.dropJob(rec)
			continue
		}
		holders := holdersOf(rec)
		n.ledger.hold(rec.ID, holders)
		if len(holders) == 1 && holders[0] == n.id.NodeID {
			// Its only holder: nobody else could have written it.
			if err := n.sched.add(rec); err != nil {
				return err
			}
		}
		if rec.State == api.JobRunning {
			running++
		}
	}
	if running > 0 {
		n.log.Info("holding running jobs", "jobs", running)
	}
	return nil
}

// janitor collects jobs whose results outlived their TTL, and executions
// whose coordinator is gone.
func (n *Node) janitor(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	c := time.NewTicker(10 * time.Second)
	defer c.Stop()
	v, changed := n.cluster.View()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n.collectExpired(now)
		case <-changed:
			v, changed = n.cluster.View()
			n.exec.collect(v, time.Now())
		case now := <-c.C:
			n.exec.collect(v, now)
		}
	}
}

// collectExpired drops the jobs whose results have outlived their TTL at
// now: those it serves, and the copies it holds for other homes.
func (n *Node) collectExpired(now time.Time) {
	for _, rec := range n.sched.expire(now) {
		n.dropJob(rec)
		n.log.Info("job results expired", "job", rec.ID)
	}
	recs, err := n.store.Jobs()
	if err != nil {
		n.log.Warn("cannot list held jobs to expire them", "err", err)
		return
	}
	for _, rec := range recs {
		if rec.State != api.JobRunning && rec.State != stateReceiving && !rec.ExpiresAt.IsZero() && now.After(rec.ExpiresAt) && !n.sched.serves(rec.ID) {
			n.dropJob(rec)
		}
	}
}

// acceptingWrites refuses new jobs while the disk refuses writes or the
// node holds no quorum.
func (n *Node) acceptingWrites() error {
	if err := n.sched.storageErr(); err != nil {
		return wireError(err)
	}
	if err := n.cluster.Quorum(); err != nil {
		return transport.Errorf(api.CodeNoQuorum, "%v; submit to a node that holds one (gridnode members shows which)", err)
	}
	return nil
}

func (n *Node) view() grid.View {
	v, _ := n.cluster.View()
	return v
}

// Addr is where the node listens.
func (n *Node) Addr() string {
	if n.lis == nil {
		return ""
	}
	return n.lis.Addr()
}

// Identity is the node's ID and incarnation.
func (n *Node) Identity() grid.Identity { return n.id }

// TLSDir holds the cluster CA and the node's certificate.
func (n *Node) TLSDir() string { return filepath.Join(n.dataDir, "tls") }

// Info describes the node.
func (n *Node) Info() api.NodeInfo {
	max := n.sandbox.MaxLimits()
	running, _ := n.exec.load()
	return api.NodeInfo{
		NodeID: n.id.NodeID, Incarnation: n.cluster.Self().Incarnation, Epoch: n.view().Epoch, Addr: n.Addr(),
		Labels: n.cfg.Labels, Slots: n.cfg.Slots, Running: running, Isolation: string(n.cfg.Isolation),
		Version: Version, Started: n.started.UTC(),
		MaxLimits: api.Limits{MemoryBytes: max.MemoryBytes, Deadline: max.Deadline, StdoutBytes: max.StdoutBytes, StderrBytes: max.StderrBytes},
	}
}

// Stats are counts since the node started, for a summary; the same
// figures go to the node's metrics.
type Stats struct {
	ItemsMoved     uint64 // items of jobs this node is home to that moved to a new coordinator
	ExecutionsLost uint64 // executions this node coordinated that were lost (their executor died, left, restarted or missed the deadline)
	Resumed        uint64 // executions this node coordinated that were to resume from their item's checkpoint (an earlier execution was lost)
	Takeovers      uint64 // jobs this node took over as their home (the home before died, left or restarted)
}

// Stats returns the node's counts so far.
func (n *Node) Stats() Stats {
	m := n.metrics
	return Stats{ItemsMoved: m.nMoved.Load(), ExecutionsLost: m.nLost.Load(), Resumed: m.nResumed.Load(), Takeovers: m.nTakeovers.Load()}
}

// Close stops serving, cancels running executions and closes the state.
// It does not leave the cluster: to the others, the node went silent (see
// Leave).
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.spawnMu.Lock()
		n.cancel()
		n.spawnMu.Unlock()
		if n.exec != nil {
			n.exec.close()
		}
		if n.sched != nil {
			n.sched.close()
		}
		if n.cluster != nil {
			n.cluster.Close()
		}
		if n.srv != nil {
			n.srv.Close()
		}
		if n.lis != nil {
			n.lis.Close()
		}
		n.wg.Wait()
		if n.gauges != nil {
			n.gauges.Unregister()
		}
		if n.sandbox != nil {
			n.sandbox.Close()
		}
		if n.store != nil {
			n.store.Close()
		}
	})
	return nil
}
