package grid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/gridnode/gridnode/transport"
)

// RaftConfig tunes the monitors' consensus. The zero value means defaults
// for a LAN.
type RaftConfig struct {
	HeartbeatTimeout   time.Duration // default 300ms
	ElectionTimeout    time.Duration // default 300ms
	LeaderLeaseTimeout time.Duration // default 150ms
	CommitTimeout      time.Duration // default 20ms
	// InMemory keeps the log in memory: for simulations only, never for a
	// real node (a restart would forget committed changes).
	InMemory bool
}

func (c RaftConfig) withDefaults() RaftConfig {
	// A monitors' leader that dies is replaced after 1-2 heartbeat
	// timeouts plus an election; with the failure detector's ~0.7 s that
	// decides how long its death takes to be agreed.
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 300 * time.Millisecond
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = 300 * time.Millisecond
	}
	if c.LeaderLeaseTimeout <= 0 {
		c.LeaderLeaseTimeout = 150 * time.Millisecond
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 20 * time.Millisecond
	}
	return c
}

var errNotLeader = errors.New("grid: not the monitors' leader")

// monitor runs this node's consensus peer when it is (or is becoming) a
// monitor. It owns the raft instance and its stores; the cluster talks to
// it through apply, leader and the lifecycle calls.
type monitor struct {
	id, addr string
	dir      string // "" with RaftConfig.InMemory
	cfg      RaftConfig
	log      *slog.Logger
	open     func(ctx context.Context, addr string) (transport.Stream, error)
	fsm      *fsm

	current atomic.Pointer[raft.Raft] // read without locks: the cluster asks under its own

	mu struct { // lifecycle
		sync.Mutex
		r       *raft.Raft
		trans   *raft.NetworkTransport
		layer   *raftLayer
		store   *raftStore
		started time.Time
		closed  bool // the node is shutting down: never start again
	}
}

func (m *monitor) raftDir() string { return filepath.Join(m.dir, "raft") }

// hasState reports whether this node was a monitor before (it keeps a log).
func (m *monitor) hasState() bool {
	if m.dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(m.raftDir(), "raft.db"))
	return err == nil
}

// start starts the consensus peer if it is not running. With bootstrap it
// founds a new cluster with this node as its only voter.
func (m *monitor) start(bootstrap bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return errPoolClosed
	}
	if m.mu.r != nil {
		return nil
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(m.id)
	conf.HeartbeatTimeout = m.cfg.HeartbeatTimeout
	conf.ElectionTimeout = m.cfg.ElectionTimeout
	conf.LeaderLeaseTimeout = m.cfg.LeaderLeaseTimeout
	conf.CommitTimeout = m.cfg.CommitTimeout
	conf.SnapshotThreshold = 1024
	conf.TrailingLogs = 1024
	conf.Logger = newRaftLogger(m.log)

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		store  *raftStore
	)
	if m.cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(m.raftDir(), 0o700); err != nil {
			return fmt.Errorf("grid: consensus state dir: %w", err)
		}
		var err error
		store, err = openRaftStore(filepath.Join(m.raftDir(), "raft.db"))
		if err != nil {
			return err
		}
		fs, err := raft.NewFileSnapshotStoreWithLogger(m.raftDir(), 2, conf.Logger)
		if err != nil {
			store.Close()
			return fmt.Errorf("grid: consensus snapshots: %w", err)
		}
		logs, stable, snaps = store, store, fs
	}
	layer := newRaftLayer(m.addr, m.open)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 2 * time.Second, Logger: conf.Logger,
	})
	if bootstrap {
		known, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			trans.Close()
			closeStore(store)
			return fmt.Errorf("grid: read consensus state: %w", err)
		}
		if !known {
			err := raft.BootstrapCluster(conf, logs, stable, snaps, trans, raft.Configuration{
				Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(m.id), Address: raft.ServerAddress(m.addr)}},
			})
			if err != nil {
				trans.Close()
				closeStore(store)
				return fmt.Errorf("grid: found cluster: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(conf, m.fsm, logs, stable, snaps, trans)
	if err != nil {
		trans.Close()
		closeStore(store)
		return fmt.Errorf("grid: start consensus: %w", err)
	}
	m.mu.r, m.mu.trans, m.mu.layer, m.mu.store, m.mu.started = r, trans, layer, store, time.Now()
	m.current.Store(r)
	m.log.Info("monitor started", "bootstrap", bootstrap)
	return nil
}

func closeStore(s *raftStore) {
	if s != nil {
		s.Close()
	}
}

// stop shuts the consensus peer down; with forget it also deletes its
// state (the node was voted out and must not campaign with an old config).
func (m *monitor) stop(forget bool) {
	m.mu.Lock()
	r, trans, store := m.mu.r, m.mu.trans, m.mu.store
	m.mu.r, m.mu.trans, m.mu.layer, m.mu.store = nil, nil, nil, nil
	m.current.Store(nil)
	m.mu.Unlock()
	if r == nil {
		return
	}
	if err := r.Shutdown().Error(); err != nil {
		m.log.Warn("consensus shutdown", "err", err)
	}
	trans.Close()
	trans.CloseStreams() // Shutdown leaves raft's pooled outgoing streams open
	closeStore(store)
	if forget && m.dir != "" {
		if err := os.RemoveAll(m.raftDir()); err != nil {
			m.log.Warn("cannot delete old consensus state", "err", err)
		}
	}
	m.log.Info("monitor stopped", "forget", forget)
}

// close stops the peer for good: later start calls fail.
func (m *monitor) close() {
	m.mu.Lock()
	m.mu.closed = true
	m.mu.Unlock()
	m.stop(false)
}

func (m *monitor) raft() *raft.Raft { return m.current.Load() }

type raftServer = raft.Server

// handle passes a raw consensus stream to the running peer, if any.
func (m *monitor) handle(ctx context.Context, peer transport.Peer, st transport.Stream) {
	m.mu.Lock()
	l := m.mu.layer
	m.mu.Unlock()
	if l == nil {
		st.Abort()
		return
	}
	l.handle(ctx, peer, st)
}

func (m *monitor) isLeader() bool {
	r := m.raft()
	return r != nil && r.State() == raft.Leader
}

// leader returns the consensus leader's node ID and address, as this peer
// knows them.
func (m *monitor) leader() (id, addr string) {
	r := m.raft()
	if r == nil {
		return "", ""
	}
	a, i := r.LeaderWithID()
	return string(i), string(a)
}

// apply commits a change through the consensus and returns the view after
// it. Only the leader can.
func (m *monitor) apply(ctx context.Context, c Change) (View, error) {
	r := m.raft()
	if r == nil || r.State() != raft.Leader {
		return View{}, errNotLeader
	}
	b, err := transport.Marshal(c)
	if err != nil {
		return View{}, err
	}
	timeout := callTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := r.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return View{}, errNotLeader
		}
		return View{}, fmt.Errorf("grid: commit %s: %w", c, err)
	}
	res := f.Response().(applyResult)
	return res.view, res.err
}

// voters returns the current consensus configuration.
func (m *monitor) voters() ([]raft.Server, error) {
	r := m.raft()
	if r == nil {
		return nil, errNotLeader
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// runningFor is how long the peer has been running; 0 when it is not.
func (m *monitor) runningFor() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.r == nil {
		return 0
	}
	return time.Since(m.mu.started)
}

// raftLogWriter turns raft's log lines into slog debug records: raft
// warns about every heartbeat to a dead peer, which the cluster reports
// better itself.
type raftLogWriter struct{ log *slog.Logger }

func (w raftLogWriter) Write(p []byte) (int, error) {
	w.log.Debug("consensus", "msg", string(bytes.TrimSpace(p)))
	return len(p), nil
}

func newRaftLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: raftLogWriter{log: log},
	})
}
