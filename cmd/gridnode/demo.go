package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
)

// localGrid is a cluster of nodes started inside this process, each on its
// own loopback port (real QUIC) and data dir, with a client on the first.
type localGrid struct {
	nodes  []*sched.Node
	hosts  map[string]string // node ID → host label
	client *sdk.Client
}

// localGridConfig says how to start a localGrid.
type localGridConfig struct {
	dir       string // one data dir per node under it
	nodes     int
	isolation plugins.Isolation
	slots     int // per node; 0: the node's default
	log       *slog.Logger
}

// startLocalGrid starts the nodes: the first founds the cluster, the others
// get its CA (as `agent --cluster-ca` would copy it) and join through it. It
// returns once every node sees all of them alive and the monitors are
// complete, so that a job submitted next is spread over all of them.
func startLocalGrid(ctx context.Context, cfg localGridConfig) (_ *localGrid, err error) {
	g := &localGrid{hosts: map[string]string{}}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	monitors := 3
	if cfg.nodes < 3 {
		monitors = 1
	}
	for i := range cfg.nodes {
		dir := filepath.Join(cfg.dir, fmt.Sprintf("node-%d", i+1))
		host := fmt.Sprintf("demo-%d", i+1)
		nc := sched.Config{
			DataDir: dir, ListenAddr: "127.0.0.1:0", Labels: map[string]string{"host": host},
			Isolation: cfg.isolation, Slots: cfg.slots, Monitors: monitors, Logger: cfg.log.With("host", host),
		}
		if i > 0 {
			if err := copyClusterCA(g.nodes[0].TLSDir(), filepath.Join(dir, "tls")); err != nil {
				return nil, fmt.Errorf("node %d: cluster CA: %w", i+1, err)
			}
			nc.Join = []string{g.nodes[0].Addr()}
		}
		n, err := sched.StartNode(ctx, nc)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		g.nodes = append(g.nodes, n)
		g.hosts[n.Identity().NodeID] = host
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, n := range g.nodes {
		if err := waitView(wctx, n, cfg.nodes, min(cfg.nodes, monitors)); err != nil {
			return nil, err
		}
		if err := n.Cluster().WaitQuorum(wctx); err != nil {
			return nil, fmt.Errorf("node %s holds no quorum: %w", n.Identity().NodeID, err)
		}
	}
	first := g.nodes[0]
	cert, key, err := transport.IssueClient(first.TLSDir(), "embedded", filepath.Join(cfg.dir, "client"))
	if err != nil {
		return nil, err
	}
	g.client, err = sdk.Dial(ctx, sdk.Config{Addr: first.Addr(), CA: filepath.Join(first.TLSDir(), "ca.pem"), Cert: cert, Key: key})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// waitView waits until n's view holds live members alive and monitors
// monitors.
func waitView(ctx context.Context, n *sched.Node, live, monitors int) error {
	for {
		v, changed := n.Cluster().View()
		if len(v.Live()) >= live && len(v.Monitors()) >= monitors {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("node %s sees %d of %d nodes alive and %d of %d monitors at epoch %d: %w",
				n.Identity().NodeID, len(v.Live()), live, len(v.Monitors()), monitors, v.Epoch, ctx.Err())
		}
	}
}

func (g *localGrid) close() {
	if g.client != nil {
		g.client.Close()
	}
	for _, n := range slices.Backward(g.nodes) {
		n.Close()
	}
}

// host names a node by its host label, for people.
func (g *localGrid) host(id string) string {
	if h, ok := g.hosts[id]; ok {
		return h
	}
	return id
}

// quietLogger logs warnings and errors only.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode demo", flag.ContinueOnError)
	items := fs.Int("items", 400, "work items: ranges of --width numbers each")
	width := fs.Int("width", 2500, "numbers per item")
	nodes := fs.Int("nodes", 3, "nodes of the embedded cluster (1-9)")
	replicas := fs.Int("replicas", 2, "executions of each item on distinct hosts; all of them must agree")
	iso := fs.String("isolation", "process", "process or inprocess")
	slots := fs.Int("slots", 0, "execution slots per node (default: cores + 2; the nodes share this machine's cores)")
	keep := fs.Bool("keep", false, "keep the nodes' data dirs")
	kill := fs.Float64("kill-at", 0.4, "kill the job's home (the first node, which the client talks to) without warning once this share of the items is committed (0: no kill)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *items < 1 || *width < 1 || int64(*items)*int64(*width) > 1e9 {
		return fail(exitUsage, "--items and --width must be positive, with items×width ≤ 1e9")
	}
	if *nodes < 1 || *nodes > 9 {
		return fail(exitUsage, "--nodes %d: give 1 to 9", *nodes)
	}
	if *replicas < 1 || *replicas > *nodes {
		return fail(exitUsage, "--replicas %d: give 1 to --nodes (%d): each execution of an item needs its own host", *replicas, *nodes)
	}
	if i := plugins.Isolation(*iso); i != plugins.Process && i != plugins.InProcess {
		return fail(exitUsage, "--isolation %q: use process or inprocess", *iso)
	}
	if *slots < 0 {
		return fail(exitUsage, "--slots %d: give a positive number, or 0 for the default", *slots)
	}
	if *slots == 0 {
		*slots = localSlots(runtime.GOMAXPROCS(0))
	}
	if *kill < 0 || *kill >= 1 {
		return fail(exitUsage, "--kill-at %v: give a share of the items below 1 (0.4: at 40%%), or 0 for no kill", *kill)
	}
	killNote := ""
	if *kill > 0 && (*nodes < 3 || *replicas >= *nodes) {
		// The job needs the survivors: a monitor majority and a host per replica.
		killNote = fmt.Sprintf("no node killed: that takes --nodes ≥ 3 and --replicas below --nodes (here %d and %d)", *nodes, *replicas)
		*kill = 0
	}
	dir, err := os.MkdirTemp("", "gridnode-demo-")
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("gridnode demo: counting the primes below %d as %d work items on an embedded %d-node cluster,\n", *items**width, *items, *nodes)
	if *replicas > 1 {
		fmt.Printf("  each item run %d× on distinct hosts; %d equal outcomes commit it\n", *replicas, *replicas)
	} else {
		fmt.Println("  each item run once: its outcome commits it")
	}
	start := time.Now()
	g, err := startLocalGrid(ctx, localGridConfig{dir: dir, nodes: *nodes, isolation: plugins.Isolation(*iso), slots: *slots, log: quietLogger(os.Stderr)})
	if err != nil {
		return fail(exitLocal, "start the embedded cluster: %v", err)
	}
	defer g.close()
	v, _ := g.nodes[0].Cluster().View()
	for _, n := range g.nodes {
		info := n.Info()
		role := "member"
		if m, _ := v.Member(info.NodeID); m.Monitor {
			role = "monitor"
		}
		fmt.Printf("  node %s host=%s on %s (QUIC, mutual TLS), %s, %d slots, %s isolation\n",
			info.NodeID, g.host(info.NodeID), info.Addr, role, info.Slots, info.Isolation)
	}
	fmt.Printf("  cluster ready in %s: epoch %d, %d nodes alive, %d monitors; data in %s\n",
		time.Since(start).Round(time.Millisecond), v.Epoch, len(v.Live()), len(v.Monitors()), dir)

	push, err := g.client.PushModule(ctx, testdata.Primes)
	if err != nil {
		return nodeError(err)
	}
	fmt.Printf("  module primes.wasm (%d KiB) stored as %s\n", len(testdata.Primes)>>10, push.Hash)

	inputs := func(yield func([]byte, error) bool) {
		for i := range *items {
			lo := int64(i) * int64(*width)
			if !yield([]byte(fmt.Sprintf("%d %d", lo, lo+int64(*width))), nil) {
				return
			}
		}
	}
	spec := api.JobSpec{Name: "primes", Module: push.Hash, Policy: api.Policy{Replicas: *replicas, Quorum: *replicas}}
	reply, err := g.client.Submit(ctx, spec, inputs)
	if err != nil {
		return nodeError(err)
	}
	fmt.Printf("  job %s accepted by %s: %d items\n", reply.JobID, g.host(g.nodes[0].Identity().NodeID), reply.Items)
	var killed <-chan killReport
	if *kill > 0 {
		// The node that accepted the job, and the one this client talks to:
		// the job's home moves to another holder, and the client goes on
		// through another node.
		victim := g.nodes[0]
		fmt.Printf("  %s (the job's home, and this client's node) will be killed without warning once %.0f%% of the items are committed\n", g.host(victim.Identity().NodeID), *kill*100)
		killed = g.killAt(ctx, victim, reply.JobID, uint64(*kill*float64(reply.Items)))
	}

	outDir := filepath.Join(dir, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fail(exitLocal, "%v", err)
	}
	// Every committed item's canonical vote must come from as many hosts as
	// the quorum: that is what running it on distinct hosts means.
	hostsPerItem := map[int]uint64{}
	var example *api.Result
	var fewHosts []uint64
	each := func(r api.Result) {
		if !r.OK() || len(r.Votes) == 0 {
			return
		}
		hosts := map[string]bool{}
		for _, id := range r.Votes[0].Nodes {
			hosts[g.host(id)] = true
		}
		hostsPerItem[len(hosts)]++
		if len(hosts) < *replicas {
			fewHosts = append(fewHosts, r.Index)
		}
		if example == nil || (len(example.Votes) == 1 && len(r.Votes) > 1) {
			example = &r
		}
	}
	prog := newProgress(os.Stderr, reply.JobID, reply.Items)
	sum, err := collectEach(ctx, g.client, reply, outDir, func(i uint64) string { return fmt.Sprintf("%06d.out", i) }, prog, voteTally(*replicas, *replicas), each)
	prog.done()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	var kr *killReport
	if killed != nil {
		select {
		case r := <-killed:
			kr = &r
		case <-time.After(30 * time.Second):
		}
	}

	// Check every result against a sieve computed here, natively.
	limit := *items * *width
	sieve := primeSieve(limit)
	var total, wrong int
	for i := range *items {
		lo, hi := i**width, (i+1)**width
		b, err := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("%06d.out", i)))
		if err != nil {
			wrong++
			continue
		}
		want := 0
		for n := lo; n < hi; n++ {
			if sieve[n] {
				want++
			}
		}
		got, ok := parsePrimesLine(string(b), lo, hi)
		if !ok || got != want {
			if wrong < 5 {
				fmt.Printf("  WRONG item %d: got %q, want count %d\n", i, strings.TrimSpace(string(b)), want)
			}
			wrong++
		}
		total += got
	}
	want := 0
	for _, p := range sieve {
		if p {
			want++
		}
	}
	fmt.Printf("summary: job %s %s in %s — %d items, %d ok, %d failed, %d checked wrong\n",
		reply.JobID, sum.State, elapsed.Round(time.Millisecond), sum.Items, sum.OK, sum.Failed, wrong)
	fmt.Printf("  primes below %d: grid says %d, a native sieve says %d", limit, total, want)
	if known, ok := knownPi[limit]; ok {
		fmt.Printf(", the known value is %d", known)
		if known != want {
			wrong++
		}
	}
	fmt.Println()
	vs := sum.Votes
	fmt.Printf("  votes: %d items committed; %d agreed at the first try (%d execution%s), %d needed more, %d without consensus\n",
		sum.OK+sum.Failed-vs.NoConsensus-vs.Undecided, vs.FirstTry, *replicas, plural(*replicas), vs.MoreExecs, vs.NoConsensus)
	fmt.Printf("  executions per node (in the committed votes): ")
	ids := slices.SortedFunc(maps.Keys(vs.PerNode), func(a, b string) int { return strings.Compare(g.host(a), g.host(b)) })
	for i, id := range ids {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%s %d", g.host(id), vs.PerNode[id])
	}
	fmt.Println()
	fmt.Print("  distinct hosts per item: ")
	for i, h := range slices.Sorted(maps.Keys(hostsPerItem)) {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%d for %d items", h, hostsPerItem[h])
	}
	fmt.Println()
	switch {
	case killNote != "":
		fmt.Println("  " + killNote)
	case kr != nil && kr.err != nil:
		fmt.Printf("  the kill: %v\n", kr.err)
	case kr != nil:
		var st sched.Stats
		var newHome []string
		for _, n := range g.nodes[1:] {
			s := n.Stats()
			st.ItemsMoved += s.ItemsMoved
			st.ExecutionsLost += s.ExecutionsLost
			st.Resumed += s.Resumed
			if s.Takeovers > 0 {
				newHome = append(newHome, g.host(n.Identity().NodeID))
			}
		}
		fmt.Printf("  killed %s without warning with %d of %d items committed; declared dead %s later: epoch %d → %d\n",
			kr.host, kr.committed, sum.Items, kr.dead.Round(time.Millisecond), kr.epochBefore, kr.epochAfter)
		if len(newHome) > 0 {
			through := g.client.Addr()
			for _, n := range g.nodes {
				if n.Addr() == through {
					through = g.host(n.Identity().NodeID)
				}
			}
			fmt.Printf("  the job's new home: %s took it over from the copies of its holders; this client went on through %s\n",
				strings.Join(newHome, ", "), through)
		}
		fmt.Printf("  after the kill: %d items moved to a new coordinator, %d executions lost and run again elsewhere\n",
			st.ItemsMoved, st.ExecutionsLost)
	case *kill > 0:
		fmt.Println("  no node was killed: the job finished first")
	}
	if example != nil {
		fmt.Printf("  e.g. item %d (%d execution%s): %s\n", example.Index, example.Attempts, plural(example.Attempts), voteLine(example.Votes, g.host))
	}
	if len(fewHosts) > 0 {
		fmt.Printf("  WRONG: %d items were committed on fewer than %d hosts, e.g. item %d\n", len(fewHosts), *replicas, fewHosts[0])
		wrong += len(fewHosts)
	}
	if sum.Failed > 0 || wrong > 0 || total != want || sum.State != api.JobDone {
		return fail(exitItemsFailed, "the demo's results are NOT all correct")
	}
	fmt.Println("  every result verified: OK")
	return nil
}

// killReport is what the demo saw of the node it killed.
type killReport struct {
	host                    string
	committed               uint64 // items committed when it was killed
	dead                    time.Duration
	epochBefore, epochAfter uint64
	err                     error
}

// killAt closes victim without a leave (to the others it goes silent, as
// after kill -9) once the job has committed items, and reports when the
// first node declares it dead. The channel gets nothing if the job ends
// first.
func (g *localGrid) killAt(ctx context.Context, victim *sched.Node, jobID string, items uint64) <-chan killReport {
	out := make(chan killReport, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var st api.JobStatus
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var err error
			if st, err = g.client.Status(ctx, jobID); err != nil || st.State != api.JobRunning {
				return
			}
			if st.Committed+st.Failed >= items {
				break
			}
		}
		id := victim.Identity().NodeID
		observer := g.nodes[1].Cluster()
		v, changed := observer.View()
		r := killReport{host: g.host(id), committed: st.Committed + st.Failed, epochBefore: v.Epoch}
		victim.Close()
		t0 := time.Now()
		timeout := time.After(60 * time.Second)
		for {
			if m, ok := v.Member(id); !ok || m.State != grid.Alive {
				r.dead, r.epochAfter = time.Since(t0), v.Epoch
				out <- r
				return
			}
			select {
			case <-changed:
				v, changed = observer.View()
			case <-timeout:
				r.err = fmt.Errorf("%s was not declared dead within 60 s of the kill", r.host)
				out <- r
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// knownPi holds published values of π(n), the count of primes below n.
var knownPi = map[int]int{1e3: 168, 1e4: 1229, 1e5: 9592, 1e6: 78498, 1e7: 664579, 1e8: 5761455}

func primeSieve(n int) []bool {
	p := make([]bool, n)
	for i := 2; i < n; i++ {
		p[i] = true
	}
	for i := 2; i*i < n; i++ {
		if p[i] {
			for j := i * i; j < n; j += i {
				p[j] = false
			}
		}
	}
	return p
}

// parsePrimesLine reads primes.wasm's "lo hi count\n" and checks lo and hi.
func parsePrimesLine(s string, lo, hi int) (int, bool) {
	f := strings.Fields(s)
	if len(f) != 3 || f[0] != strconv.Itoa(lo) || f[1] != strconv.Itoa(hi) {
		return 0, false
	}
	n, err := strconv.Atoi(f[2])
	return n, err == nil
}
