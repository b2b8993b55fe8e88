package grid

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridnode/gridnode/transport"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// Raft runs on real time here (testing/synctest would need every raft
// goroutine inside the bubble, and raft's timers are its own), so these
// tests poll with deadlines.

// raftTestDialer opens raw raft streams, keeping one transport client per
// address, as the node's pooled clients do.
type raftTestDialer struct {
	net transport.Network

	mu      sync.Mutex
	clients map[string]*transport.Client
}

func newRaftTestDialer(n transport.Network) *raftTestDialer {
	return &raftTestDialer{net: n, clients: make(map[string]*transport.Client)}
}

func (d *raftTestDialer) open(ctx context.Context, addr string) (transport.Stream, error) {
	c, err := d.client(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c.OpenRaw(ctx, raftMethod)
}

func (d *raftTestDialer) client(ctx context.Context, addr string) (*transport.Client, error) {
	d.mu.Lock()
	c := d.clients[addr]
	d.mu.Unlock()
	if c != nil && c.Conn().Context().Err() == nil {
		return c, nil
	}
	// Dial outside the lock: a dial into a partition takes the whole timeout.
	nc, err := transport.Dial(ctx, d.net, addr, transport.ClientConfig{})
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.clients[addr]; old != nil {
		if old.Conn().Context().Err() == nil {
			nc.Close() // someone else dialed first
			return old, nil
		}
		old.Close()
	}
	d.clients[addr] = nc
	return nc, nil
}

func (d *raftTestDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for addr, c := range d.clients {
		c.Close()
		delete(d.clients, addr)
	}
}

// raftTestLog collects every node's raft log; a failing test prints its
// tail, and so does any test with RAFTLOG set in the environment.
type raftTestLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *raftTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *raftTestLog) dumpOnFailure(t *testing.T) {
	if !t.Failed() && os.Getenv("RAFTLOG") == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 30000 {
		s = "...\n" + s[len(s)-30000:]
	}
	t.Logf("raft log:\n%s", s)
}

// raftTestFSM records the commands it applies, in order.
type raftTestFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *raftTestFSM) Apply(l *raft.Log) any {
	if l.Type == raft.LogCommand {
		f.mu.Lock()
		f.cmds = append(f.cmds, string(l.Data))
		f.mu.Unlock()
	}
	return nil
}

func (f *raftTestFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *raftTestFSM) Snapshot() (raft.FSMSnapshot, error) { return raftTestSnapshot(f.applied()), nil }

func (f *raftTestFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var cmds []string
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		cmds = append(cmds, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.cmds = cmds
	f.mu.Unlock()
	return nil
}

type raftTestSnapshot []string

func (s raftTestSnapshot) Persist(sink raft.SnapshotSink) error {
	for _, c := range s {
		if _, err := io.WriteString(sink, c+"\n"); err != nil {
			sink.Cancel()
			return err
		}
	}
	return sink.Close()
}

func (s raftTestSnapshot) Release() {}

// raftTestMonitor is one monitor: its own host on the memory network, transport
// server, raft store and raft.
type raftTestMonitor struct {
	name   string
	dir    string
	logger hclog.Logger
	srv    *transport.Server
	served chan error
	dialer *raftTestDialer

	// Replaced on restart.
	layer *raftLayer
	trans *raft.NetworkTransport
	store *raftStore
	fsm   *raftTestFSM
	r     *raft.Raft
}

func raftTestConfig(name string, logger hclog.Logger) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(name)
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 250 * time.Millisecond
	conf.CommitTimeout = 20 * time.Millisecond
	conf.Logger = logger
	return conf
}

func startRaftTestMonitor(t *testing.T, mem *transport.MemNetwork, name string, logs io.Writer) *raftTestMonitor {
	t.Helper()
	host := mem.Host(name, transport.Peer{Role: transport.RoleNode, ID: name})
	ln, err := host.Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	m := &raftTestMonitor{
		name:   name,
		dir:    t.TempDir(),
		logger: hclog.New(&hclog.LoggerOptions{Name: name, Output: logs, Level: hclog.Info}),
		srv:    transport.NewServer(transport.ServerConfig{}),
		served: make(chan error, 1),
		dialer: newRaftTestDialer(host),
	}
	go func() { m.served <- m.srv.Serve(context.Background(), ln) }()
	m.startRaft(t)
	return m
}

// startRaft starts raft on the store in the monitor's dir, fresh or not.
func (m *raftTestMonitor) startRaft(t *testing.T) {
	t.Helper()
	store, err := openRaftStore(filepath.Join(m.dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(m.dir, 2, m.logger.Named("snap"))
	if err != nil {
		t.Fatal(err)
	}
	m.store, m.fsm = store, &raftTestFSM{}
	m.layer = newRaftLayer(m.name, m.dialer.open)
	m.srv.HandleRaw(raftMethod, m.layer.handle)
	m.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  m.layer,
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  m.logger.Named("net"),
	})
	m.r, err = raft.NewRaft(raftTestConfig(m.name, m.logger), m.fsm, store, store, snaps, m.trans)
	if err != nil {
		t.Fatal(err)
	}
}

// stopRaft shuts raft down (which closes its transport and our layer),
// drops raft's pooled outgoing streams and closes the store.
func (m *raftTestMonitor) stopRaft(t *testing.T) {
	t.Helper()
	if m.r == nil {
		return
	}
	if err := m.r.Shutdown().Error(); err != nil {
		t.Errorf("%s: raft shutdown: %v", m.name, err)
	}
	m.trans.CloseStreams()
	if err := m.store.Close(); err != nil {
		t.Errorf("%s: close raft store: %v", m.name, err)
	}
	m.r = nil
}

func (m *raftTestMonitor) stop(t *testing.T) {
	t.Helper()
	m.stopRaft(t)
	m.srv.Close()
	if err := <-m.served; !errors.Is(err, transport.ErrServerClosed) {
		t.Errorf("%s: serve: %v", m.name, err)
	}
	m.dialer.close()
}

// raftEventually polls cond every 10ms until it holds or d passes.
func raftEventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRaftLeader waits until one of ms leads and all of ms agree on it.
func waitRaftLeader(t *testing.T, ms ...*raftTestMonitor) *raftTestMonitor {
	t.Helper()
	var leader *raftTestMonitor
	raftEventually(t, 10*time.Second, "no leader agreed on", func() bool {
		leader = nil
		for _, m := range ms {
			if m.r.State() == raft.Leader {
				leader = m
			}
		}
		if leader == nil {
			return false
		}
		for _, m := range ms {
			if _, id := m.r.LeaderWithID(); id != raft.ServerID(leader.name) {
				return false
			}
		}
		return true
	})
	return leader
}

func raftApplyAll(t *testing.T, leader *raftTestMonitor, cmds []string) {
	t.Helper()
	futures := make([]raft.ApplyFuture, len(cmds))
	for i, c := range cmds {
		futures[i] = leader.r.Apply([]byte(c), 5*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatalf("apply %q on %s: %v", cmds[i], leader.name, err)
		}
	}
}

func waitRaftApplied(t *testing.T, want []string, ms ...*raftTestMonitor) {
	t.Helper()
	for _, m := range ms {
		raftEventually(t, 10*time.Second, fmt.Sprintf("%s did not apply the %d commands in order", m.name, len(want)), func() bool {
			return slices.Equal(m.fsm.applied(), want)
		})
	}
}

func raftTestCommands(from, to int) []string {
	var cmds []string
	for i := from; i < to; i++ {
		cmds = append(cmds, fmt.Sprintf("cmd-%03d", i))
	}
	return cmds
}

func TestRaftLayerCluster(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	start := time.Now()
	logs := &raftTestLog{}
	defer logs.dumpOnFailure(t)

	mem := transport.NewMemNetwork(1)
	var ms []*raftTestMonitor
	for _, name := range []string{"n1", "n2", "n3"} {
		ms = append(ms, startRaftTestMonitor(t, mem, name, logs))
	}
	defer func() {
		for _, m := range ms {
			m.stop(t)
		}
	}()
	var servers []raft.Server
	for _, m := range ms {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.name), Address: raft.ServerAddress(m.name)})
	}
	if err := ms[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}

	leader := waitRaftLeader(t, ms...)
	t.Logf("%v: %s leads", time.Since(start).Round(time.Millisecond), leader.name)
	want := raftTestCommands(0, 100)
	raftApplyAll(t, leader, want)
	waitRaftApplied(t, want, ms...)
	t.Logf("%v: 100 commands applied everywhere", time.Since(start).Round(time.Millisecond))

	// Cut the leader off: the other two elect one of theirs and go on.
	old := leader
	var rest []*raftTestMonitor
	for _, m := range ms {
		if m != old {
			rest = append(rest, m)
		}
	}
	mem.Partition([]string{old.name})
	leader = waitRaftLeader(t, rest...)
	t.Logf("%v: partitioned %s away; %s leads the majority", time.Since(start).Round(time.Millisecond), old.name, leader.name)
	more := raftTestCommands(100, 120)
	raftApplyAll(t, leader, more)
	want = append(want, more...)
	waitRaftApplied(t, want, rest...)
	raftEventually(t, 5*time.Second, "the cut-off leader did not step down", func() bool { return old.r.State() != raft.Leader })
	if got := len(old.fsm.applied()); got != 100 {
		t.Fatalf("the cut-off node applied %d commands, want 100", got)
	}
	if err := old.r.Apply([]byte("lost"), 100*time.Millisecond).Error(); err == nil {
		t.Fatal("the cut-off node committed a command")
	}

	// Heal: the old leader follows and catches up.
	mem.Heal()
	waitRaftApplied(t, want, old)
	if l := waitRaftLeader(t, ms...); l != leader {
		t.Logf("leadership moved to %s after the heal", l.name)
		leader = l
	}
	t.Logf("%v: healed; %s caught up", time.Since(start).Round(time.Millisecond), old.name)

	// Restart a follower from its store (one that stayed in the majority, if
	// the old leader leads again); it replays its log into a fresh FSM and
	// catches up with what it missed while down.
	var f *raftTestMonitor
	for _, m := range ms {
		if m != leader && (f == nil || f == old) {
			f = m
		}
	}
	f.stopRaft(t)
	more = raftTestCommands(120, 130)
	raftApplyAll(t, leader, more)
	want = append(want, more...)
	f.startRaft(t)
	waitRaftApplied(t, want, ms...)
	t.Logf("%v: restarted %s caught up", time.Since(start).Round(time.Millisecond), f.name)
}

// startRaftLayerServer serves a raft layer as node name on mem.
func startRaftLayerServer(t *testing.T, mem *transport.MemNetwork, name string) (*raftLayer, func()) {
	t.Helper()
	host := mem.Host(name, transport.Peer{Role: transport.RoleNode, ID: name})
	ln, err := host.Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerConfig{})
	layer := newRaftLayer(name, nil)
	srv.HandleRaw(raftMethod, layer.handle)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	return layer, func() {
		srv.Close()
		if err := <-served; !errors.Is(err, transport.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}
}

func TestRaftLayerRefusesClients(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	mem := transport.NewMemNetwork(2)
	layer, stop := startRaftLayerServer(t, mem, "n1")
	defer stop()

	accepted := make(chan error, 1)
	go func() {
		c, err := layer.Accept()
		if err == nil {
			c.Close()
			err = fmt.Errorf("accepted a conn from %v", c.RemoteAddr())
		}
		accepted <- err
	}()

	client := newRaftTestDialer(mem.Host("cli", transport.Peer{Role: transport.RoleClient, ID: "cli"}))
	defer client.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := client.open(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(st); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a client's raft stream: read %v, want it reset", err)
	} else {
		t.Logf("client refused: %v", err)
	}
	st.Abort()

	layer.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v, want net.ErrClosed after Close", err)
	}
	if _, err := layer.Dial("n1", time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Dial on a closed layer: %v", err)
	}
}

func TestRaftLayerConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	mem := transport.NewMemNetwork(3)
	server, stop := startRaftLayerServer(t, mem, "n1")
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	dialer := newRaftTestDialer(mem.Host("n2", transport.Peer{Role: transport.RoleNode, ID: "n2"}))
	defer dialer.close()
	n2 := newRaftLayer("n2", dialer.open)
	defer n2.Close()

	if a := server.Addr(); a.Network() != "grid" || a.String() != "n1" {
		t.Fatalf("Addr: %s %s", a.Network(), a)
	}

	dial := func() (net.Conn, net.Conn) {
		t.Helper()
		c, err := n2.Dial("n1", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The server only sees the stream once the opener wrote; OpenRaw
		// wrote the call header, so Accept returns now.
		s, err := server.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c, s := dial()
	if c.LocalAddr().String() != "n2" || c.RemoteAddr().String() != "n1" || c.RemoteAddr().Network() != "grid" {
		t.Fatalf("dialed conn: %v → %v", c.LocalAddr(), c.RemoteAddr())
	}
	if s.LocalAddr().String() != "n1" || !strings.Contains(s.RemoteAddr().String(), "n2") {
		t.Fatalf("accepted conn: %v ← %v", s.LocalAddr(), s.RemoteAddr())
	}

	// Bytes both ways; what was written before Close still arrives.
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pong and bye")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(c); err != nil || string(got) != "pong and bye" {
		t.Fatalf("after the peer's Close: %q, %v", got, err)
	}
	// The closed side stopped reading: our writes fail.
	raftEventually(t, 2*time.Second, "writes to a closed peer keep succeeding", func() bool {
		_, err := c.Write([]byte("x"))
		return err != nil
	})
	if _, err := s.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	c.Close()

	// Deadlines: a read deadline fires; a later write deadline does not cut
	// the read short (both map onto the stream's one deadline).
	c, s = dial()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	t0 := time.Now()
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v", err)
	}
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Fatalf("read deadline fired after %v", d)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.Write([]byte("late"))
	}()
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
		t.Fatalf("read within its deadline: %q, %v", buf, err)
	}
	c.SetDeadline(time.Time{})

	// The server going away aborts accepted conns and their handlers return
	// (stop waits for them).
	stop()
	stopped = true
	if _, err := s.Read(buf); err == nil {
		t.Fatal("accepted conn still reads after the server closed")
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("dialed conn still reads after the server closed")
	}
	c.Close()
	s.Close()
}
