package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gridnode/gridnode/cmd/gridnode/internal/udpproxy"
	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/sdk"
)

// Timing of the harness's own waits.
const (
	// PollEvery is the pause between two rounds of Poll.
	PollEvery = 20 * time.Millisecond
	// callTimeout bounds one Members call in a round: a node that does not
	// answer in time counts as not answering, and the round goes on.
	callTimeout = time.Second
	formTimeout = 30 * time.Second // Start: until the cluster has formed
	readyWait   = 30 * time.Second // one agent: until it wrote its profile
	termWait    = 20 * time.Second // Term: until the agent exited
	reapWait    = 10 * time.Second // SIGKILL: until the process is reaped
	logTail     = 40               // lines of each log printed on failure
	portRetries = 3
)

// Options says what cluster to start. The zero value of each field means its
// default.
type Options struct {
	N        int   // agents; default 3
	Proxy    bool  // put every node behind a udpproxy.Proxy
	Monitors int   // --monitors; default 3
	Seed     int64 // the proxy's seed
	// Args are extra agent flags, after the harness's own (so they win).
	// --no-profile breaks the harness: it waits for the profile.
	Args   []string
	Labels func(i int) string // --labels of node i; nil: none (HostLabels gives each its own host)
	// Binary is the gridnode binary to run; "" builds one with Binary.
	Binary string
	// Env is extra environment of node i's agent ("KEY=value"), after the
	// test process's own environment; nil: none.
	Env func(i int) []string
	// FaultyNodes maps a node index to fault variables for its agent, such
	// as "GRIDNODE_FAULT_WRONG_OUTPUT=1": those nodes run the binary built
	// with -tags gridnode_faults (BinaryWithTags(t, FaultsTag)), with these
	// variables after Env's. The others run Binary. A restart keeps both.
	FaultyNodes map[int][]string
}

// HostLabels gives node i the label host=h<i>: every agent its own host
// failure domain, as on separate machines. Use it as Options.Labels.
func HostLabels(i int) string { return "host=h" + strconv.Itoa(i) }

// Cluster is a set of agent processes started by Start.
type Cluster struct {
	t     testing.TB
	opt   Options
	proxy *udpproxy.Proxy
	nodes []*Node

	mu sync.Mutex // guards the mutable fields of every Node
}

// Node is one agent. Its paths are fixed; what changes with restarts is
// read through methods.
type Node struct {
	c       *Cluster
	Index   int    // 1-based
	ID      string // node ID: "n<Index>"
	Dir     string
	DataDir string
	Profile string // the client profile the agent writes
	LogFile string
	Labels  string   // its --labels; "" for none
	Binary  string   // the gridnode binary it runs
	Env     []string // its environment beyond the test process's
	Faulty  bool     // it runs the fault-injection build (Options.FaultyNodes)

	// guarded by c.mu
	real, addr string // listening (real) and advertised address
	cmd        *exec.Cmd
	done       chan struct{} // closed once the process is reaped
	exitErr    error
	stopped    bool
	expectExit bool
	gen        int // bumped by every start, kill and exit: invalidates the client
	client     *sdk.Client
	crashes    []string // exits nobody asked for
}

// Start starts opt.N agents n1..nN and waits until every node's Members
// shows N alive members, agrees on the epoch and the monitors, and holds a
// quorum. A cleanup SIGKILLs every agent, closes the proxy and, if the test
// failed, logs the tail of every node's log. An agent that exits without
// the test asking for it (Kill, Term, WaitExit) fails the test.
func Start(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if opt.N <= 0 {
		opt.N = 3
	}
	if opt.Monitors == 0 {
		opt.Monitors = 3
	}
	bin := opt.Binary
	if bin == "" {
		bin = Binary(t)
	}
	for i := range opt.FaultyNodes {
		if i < 1 || i > opt.N {
			t.Fatalf("harness: FaultyNodes names node %d in a cluster of %d", i, opt.N)
		}
	}
	var faultyBin string
	if len(opt.FaultyNodes) > 0 {
		faultyBin = BinaryWithTags(t, FaultsTag)
	}
	root := t.TempDir()
	c := &Cluster{t: t, opt: opt}
	if opt.Proxy {
		c.proxy = udpproxy.New(opt.Seed)
	}
	for i := 1; i <= opt.N; i++ {
		dir := filepath.Join(root, fmt.Sprintf("n%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		n := &Node{
			c: c, Index: i, ID: fmt.Sprintf("n%d", i), Dir: dir,
			DataDir: filepath.Join(dir, "data"), Profile: filepath.Join(dir, "profile.json"),
			LogFile: filepath.Join(dir, "agent.log"), Binary: bin,
		}
		if opt.Labels != nil {
			n.Labels = opt.Labels(i)
		}
		if opt.Env != nil {
			n.Env = slices.Clone(opt.Env(i))
		}
		if fenv, ok := opt.FaultyNodes[i]; ok {
			n.Binary, n.Faulty = faultyBin, true
			n.Env = append(n.Env, fenv...)
		}
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(c.cleanup)

	if err := c.launch(c.nodes[0], nil, true); err != nil {
		t.Fatalf("harness: start n1: %v", err)
	}
	join := []string{c.nodes[0].Addr()}
	errs := make([]error, opt.N)
	var wg sync.WaitGroup
	for _, n := range c.nodes[1:] {
		wg.Go(func() {
			if err := c.launch(n, join, true); err != nil {
				errs[n.Index-1] = fmt.Errorf("start %s: %w", n.ID, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("harness: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	defer cancel()
	monitors := grid.DesiredMonitors(opt.Monitors, opt.N)
	err := c.Poll(ctx, func(r Round) bool {
		if !r.OK() || len(r.Live) != opt.N || !SameEpoch(r) {
			return false
		}
		for _, m := range r.Members {
			if !m.Quorum || len(m.Members) != opt.N || Count(m, "alive") != opt.N || MonitorCount(m) != monitors {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("harness: the cluster of %d did not form within %s: %v", opt.N, formTimeout, err)
	}
	return c
}

// launch starts n's process with join as --join, and waits until it wrote
// its profile. With newPort it picks a new real port first, and tries again
// on another one if the agent finds it taken.
func (c *Cluster) launch(n *Node, join []string, newPort bool) error {
	for attempt := 1; ; attempt++ {
		if newPort {
			if err := c.pickPort(n); err != nil {
				return err
			}
		}
		logStart, err := c.spawn(n, join)
		if err != nil {
			return err
		}
		err = c.waitReady(n)
		if err == nil {
			return nil
		}
		if newPort && attempt < portRetries && n.exited() && logSays(n.LogFile, logStart, "address already in use") {
			continue
		}
		return err
	}
}

// pickPort gives n a new real port: bind 127.0.0.1:0, note the port, close.
// Until the agent binds it, another process may take it (see launch).
func (c *Cluster) pickPort(n *Node) error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	real := pc.LocalAddr().String()
	pc.Close()
	addr := real
	if c.proxy != nil {
		if pub := c.proxy.Public(n.ID); pub == "" {
			if addr, err = c.proxy.AddNode(n.ID, real, ""); err != nil {
				return err
			}
		} else {
			if err := c.proxy.SetReal(n.ID, real); err != nil {
				return err
			}
			addr = pub
		}
	}
	c.mu.Lock()
	n.real, n.addr = real, addr
	c.mu.Unlock()
	return nil
}

// spawn starts n's agent process and returns the offset its log had.
func (c *Cluster) spawn(n *Node, join []string) (logStart int64, err error) {
	c.mu.Lock()
	real, addr := n.real, n.addr
	c.mu.Unlock()
	args := []string{"agent",
		"--data", n.DataDir, "--listen", real, "--advertise", addr, "--node-id", n.ID,
		"--monitors", strconv.Itoa(c.opt.Monitors), "--metrics", "", "--profile", n.Profile,
		"--isolation", "inprocess", "--log-level", "info",
	}
	if n.Index != 1 {
		args = append(args, "--cluster-ca", filepath.Join(c.nodes[0].DataDir, "tls"))
	}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	if n.Labels != "" {
		args = append(args, "--labels", n.Labels)
	}
	args = append(args, c.opt.Args...)

	// The profile of an earlier run would look like readiness.
	if err := os.Remove(n.Profile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close() // the child has its own descriptor
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	fmt.Fprintf(logf, "=== harness %s: %s%s %s\n", time.Now().Format("15:04:05.000"), envPrefix(n.Env), n.Binary, strings.Join(quoteEmpty(args), " "))

	cmd := exec.Command(n.Binary, args...)
	if len(n.Env) > 0 {
		cmd.Env = append(os.Environ(), n.Env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	c.mu.Lock()
	n.cmd, n.done, n.exitErr = cmd, done, nil
	n.stopped, n.expectExit = false, false
	n.gen++
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		defer c.mu.Unlock()
		n.exitErr = err
		n.gen++
		if !n.expectExit {
			n.crashes = append(n.crashes, fmt.Sprintf("%s (pid %d) exited on its own at %s: %v", n.ID, cmd.Process.Pid, time.Now().Format("15:04:05.000"), err))
		}
		close(done)
	}()
	return logStart, nil
}

// envPrefix shows env as a shell would take it before a command.
func envPrefix(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return strings.Join(env, " ") + " "
}

func quoteEmpty(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == "" {
			out[i] = `""`
		}
	}
	return out
}

// waitReady polls until n's agent wrote its profile, or exited.
func (c *Cluster) waitReady(n *Node) error {
	c.mu.Lock()
	done := n.done
	c.mu.Unlock()
	deadline := time.Now().Add(readyWait)
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	for {
		if _, err := os.Stat(n.Profile); err == nil {
			return nil
		}
		select {
		case <-done:
			c.mu.Lock()
			err := n.exitErr
			c.mu.Unlock()
			return fmt.Errorf("%s exited before it was ready (%v); see %s", n.ID, err, n.LogFile)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s wrote no profile within %s; see %s", n.ID, readyWait, n.LogFile)
		}
	}
}

func (n *Node) exited() bool {
	n.c.mu.Lock()
	done := n.done
	n.c.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// logSays reports whether file holds s after offset from.
func logSays(file string, from int64, s string) bool {
	b, err := os.ReadFile(file)
	if err != nil || int64(len(b)) < from {
		return false
	}
	return bytes.Contains(b[from:], []byte(s))
}

func (c *Cluster) cleanup() {
	for _, n := range c.nodes {
		c.signal(n, syscall.SIGKILL, true)
	}
	for _, n := range c.nodes {
		c.mu.Lock()
		done := n.done
		c.mu.Unlock()
		if done != nil {
			select {
			case <-done:
			case <-time.After(reapWait):
				c.t.Errorf("harness: %s was not reaped %s after SIGKILL", n.ID, reapWait)
			}
		}
		c.dropClient(n)
	}
	if c.proxy != nil {
		c.proxy.Close()
	}
	for _, n := range c.nodes {
		c.mu.Lock()
		crashes := n.crashes
		c.mu.Unlock()
		for _, s := range crashes {
			c.t.Errorf("harness: %s", s)
		}
	}
	if c.t.Failed() {
		for _, n := range c.nodes {
			c.t.Logf("--- %s: last %d lines of %s ---\n%s", n.ID, logTail, n.LogFile, tail(n.LogFile, logTail))
		}
	}
}

// tail returns the last lines of file.
func tail(file string, lines int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimRight(b, "\n")
	for i, cut := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if cut++; cut == lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node {
	if i < 1 || i > len(c.nodes) {
		panic(fmt.Sprintf("harness: no node %d in a cluster of %d", i, len(c.nodes)))
	}
	return c.nodes[i-1]
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return len(c.nodes) }

// Proxy is the fault proxy every node talks through; nil without
// Options.Proxy.
func (c *Cluster) Proxy() *udpproxy.Proxy { return c.proxy }

// Addr is the address n advertises: what peers dial (with the proxy, its
// public address).
func (n *Node) Addr() string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.addr
}

// Real is the address n's process listens on.
func (n *Node) Real() string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.real
}

// PID is the process ID of n's current (or last) process; 0 before start.
func (n *Node) PID() int {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Tail returns the last lines of n's log.
func (n *Node) Tail(lines int) string { return tail(n.LogFile, lines) }

// LogContains reports whether n's log, across restarts, holds s.
func (n *Node) LogContains(s string) bool { return logSays(n.LogFile, 0, s) }

// signal sends sig to n's process if it runs; expectExit marks the exit as
// asked for.
func (c *Cluster) signal(n *Node, sig syscall.Signal, expectExit bool) (done chan struct{}, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.cmd == nil {
		return nil, false
	}
	select {
	case <-n.done:
		return n.done, false
	default:
	}
	if expectExit {
		n.expectExit = true
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return n.done, false
	}
	return n.done, true
}

// Kill SIGKILLs node i and waits until the process is reaped.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	n := c.Node(i)
	done, _ := c.signal(n, syscall.SIGKILL, true)
	c.dropClient(n)
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(reapWait):
		c.t.Fatalf("harness: %s not reaped %s after SIGKILL", n.ID, reapWait)
	}
}

// Stop SIGSTOPs node i and waits until the kernel shows it stopped. A
// stopped node is not Live. Stop and Cont may be called from any goroutine
// (a duty cycle): they report failures with t.Errorf.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.pause(i, "Stop", syscall.SIGSTOP, true)
}

// Cont SIGCONTs node i and waits until the kernel shows it running.
func (c *Cluster) Cont(i int) {
	c.t.Helper()
	c.pause(i, "Cont", syscall.SIGCONT, false)
}

func (c *Cluster) pause(i int, what string, sig syscall.Signal, stopped bool) {
	c.t.Helper()
	n := c.Node(i)
	if _, ok := c.signal(n, sig, false); !ok {
		c.t.Errorf("harness: %s(%d): %s does not run", what, i, n.ID)
		return
	}
	c.mu.Lock()
	n.stopped = stopped
	c.mu.Unlock()
	if err := waitProcState(n.PID(), stopped, 5*time.Second); err != nil {
		c.t.Errorf("harness: %s(%d): %v", what, i, err)
	}
}

// Term SIGTERMs node i (continuing it if stopped), waits up to 20 s for it
// to exit and returns its exit error: nil for exit status 0. An agent that
// does not exit in time is killed.
func (c *Cluster) Term(i int) error {
	n := c.Node(i)
	_, ok := c.signal(n, syscall.SIGTERM, true)
	if !ok {
		return fmt.Errorf("harness: Term(%d): %s does not run", i, n.ID)
	}
	c.signal(n, syscall.SIGCONT, false)
	c.mu.Lock()
	n.stopped = false
	c.mu.Unlock()
	return c.WaitExit(i, termWait)
}

// WaitExit waits up to timeout for node i's process to exit on its own (as
// after `gridnode leave`) and returns its exit error: nil for exit status 0.
// The exit counts as asked for. An agent that does not exit in time is
// killed, and the error says so.
func (c *Cluster) WaitExit(i int, timeout time.Duration) error {
	n := c.Node(i)
	c.mu.Lock()
	n.expectExit = true
	done := n.done
	c.mu.Unlock()
	if done == nil {
		return fmt.Errorf("harness: %s never started", n.ID)
	}
	defer c.dropClient(n)
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return n.exitErr
	case <-time.After(timeout):
		c.signal(n, syscall.SIGKILL, true)
		<-done
		return fmt.Errorf("harness: %s did not exit within %s; killed it", n.ID, timeout)
	}
}

// Restart starts node i again on the same data dir and node ID, killing it
// first if it still runs, and waits until it wrote its profile (not until
// it rejoined: poll for that). It joins through every other running node.
// With newPort it listens on a new real port; without the proxy that is
// also its new advertised address, with the proxy the public address stays.
func (c *Cluster) Restart(i int, newPort bool) {
	c.t.Helper()
	n := c.Node(i)
	c.Kill(i)
	var join []string
	for _, j := range c.running() {
		if j != i {
			join = append(join, c.Node(j).Addr())
		}
	}
	if len(join) == 0 && i != 1 {
		join = []string{c.nodes[0].Addr()}
	}
	if err := c.launch(n, join, newPort); err != nil {
		c.t.Fatalf("harness: restart %s: %v", n.ID, err)
	}
}

// running lists the nodes whose process runs, stopped or not.
func (c *Cluster) running() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		default:
			out = append(out, n.Index)
		}
	}
	return out
}

// Running reports whether node i's process runs (stopped or not).
func (c *Cluster) Running(i int) bool { return slices.Contains(c.running(), i) }

// Live lists the nodes whose process runs and is not stopped, ascending.
func (c *Cluster) Live() []int {
	var out []int
	for _, i := range c.running() {
		c.mu.Lock()
		stopped := c.nodes[i-1].stopped
		c.mu.Unlock()
		if !stopped {
			out = append(out, i)
		}
	}
	return out
}
