package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
)

// benchReport is what `gridnode bench` measures; every figure is a median
// over rounds, and every ratio is against a baseline measured in the same
// round of the same run.
type benchReport struct {
	Cores     int             `json:"cores"`
	Nodes     int             `json:"nodes"`
	Slots     int             `json:"slots_per_node"`
	Isolation string          `json:"isolation"`
	WorkInput string          `json:"work_input"` // work.wasm's input for about 1 ms on raw wazero
	Overhead  []overheadRow   `json:"overhead"`
	Ceiling   []ceilingRow    `json:"sandbox_alone"`
	Thru      []throughputRow `json:"throughput"`
	Latency   []latencyRow    `json:"latency"`
}

type overheadRow struct {
	Module     string  `json:"module"`
	Mode       string  `json:"mode"`
	PerExecUS  float64 `json:"per_exec_us"`
	RawUS      float64 `json:"raw_us"`
	OverheadUS float64 `json:"overhead_us"`
}

// throughputRow is one job shape on the cluster. Efficiency is the
// cluster's items/s over what raw wazero on the same cores could do with
// replicas executions per item: raw items/s ÷ replicas.
type throughputRow struct {
	Items       string  `json:"items"`
	Replicas    int     `json:"replicas"`
	ClusterPerS float64 `json:"cluster_items_per_s"`
	RawPerS     float64 `json:"raw_items_per_s"`
	ItemUS      float64 `json:"raw_item_us"` // per item per core
	Efficiency  float64 `json:"efficiency"`
	Target      float64 `json:"target"`
}

// ceilingRow is one sandbox with as many workers as the cluster has slots,
// fed directly, against raw wazero: what the cluster could reach if
// scheduling cost nothing.
type ceilingRow struct {
	Items       string  `json:"items"`
	Workers     int     `json:"workers"`
	SandboxPerS float64 `json:"sandbox_items_per_s"`
	RawPerS     float64 `json:"raw_items_per_s"`
	Efficiency  float64 `json:"efficiency"`
}

type latencyRow struct {
	Replicas int     `json:"replicas"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	N        int     `json:"samples"`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// localSlots is the execution slots per node of the demo's and the bench's
// embedded nodes, which share this machine's cores: cores + 2 each. With 1
// ms items the nodes, not the executions, are the bottleneck, and more slots
// per node (a longer executor queue, more executions in flight while the
// coordinators' round trips go on) did best. Measured on 2 cores, 3 nodes,
// medians of 3-6 runs, efficiency of 1 ms / tiny items with replicas 1:
// 1 slot 0.52 / 0.21, 2 slots 0.52 / 0.22, 3 (the node's default) 0.48 /
// 0.23, 4 slots 0.56 / 0.26, 6 slots 0.54 / 0.26.
func localSlots(cores int) int { return cores + 2 }

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 3, "rounds per measurement (medians are reported)")
	execs := fs.Int("execs", 300, "executions per overhead round")
	items := fs.Int("items", 2000, "items per throughput round")
	samples := fs.Int("samples", 200, "single-item jobs per latency measurement")
	nodes := fs.Int("nodes", 3, "nodes of the embedded cluster, sharing this machine's cores")
	slots := fs.Int("slots", 0, "execution slots per node (default: cores + 2)")
	iso := fs.String("isolation", "process", "where the nodes run executions: process or inprocess")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process during the cluster measurements to this file (the raw wazero baseline's samples are labelled bench=raw: pprof -tagignore bench=raw leaves the nodes)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rounds < 1 || *execs < 10 || *items < 10 || *samples < 10 {
		return fail(exitUsage, "--rounds ≥ 1, --execs, --items and --samples ≥ 10")
	}
	if *nodes < 2 || *nodes > 9 {
		return fail(exitUsage, "--nodes %d: give 2 to 9 (replicas 2 needs two hosts)", *nodes)
	}
	if *slots < 0 {
		return fail(exitUsage, "--slots %d: give a positive number, or 0 for the default", *slots)
	}
	isolation := plugins.Isolation(*iso)
	if isolation != plugins.Process && isolation != plugins.InProcess {
		return fail(exitUsage, "--isolation %q: use process or inprocess", *iso)
	}
	cores := runtime.GOMAXPROCS(0)
	if *slots == 0 {
		*slots = localSlots(cores)
	}
	dir, err := os.MkdirTemp("", "gridnode-bench-")
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	defer os.RemoveAll(dir)
	say := func(format string, a ...any) {
		if !*asJSON {
			fmt.Printf(format, a...)
		}
	}
	rep := benchReport{Cores: cores, Nodes: *nodes, Slots: *slots, Isolation: string(isolation)}
	say("gridnode bench: %d cores; medians of %d rounds; baselines are raw wazero in the same round\n", cores, *rounds)

	// Calibrate work.wasm to about 1 ms per item on raw wazero.
	raw, err := plugins.NewRaw(ctx, testdata.Work)
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	workN := uint64(100000)
	for range 4 {
		var ds []float64
		for range 5 {
			t0 := time.Now()
			if _, err := raw.Run(ctx, []byte(fmt.Sprint(workN))); err != nil {
				return fail(exitLocal, "work.wasm: %v", err)
			}
			ds = append(ds, float64(time.Since(t0)))
		}
		workN = max(1000, uint64(float64(workN)*float64(time.Millisecond)/median(ds)))
	}
	raw.Close(ctx)
	rep.WorkInput = fmt.Sprint(workN)

	// 1. Per-execution overhead, one at a time.
	say("\nper-execution overhead (sequential):\n")
	mods := []struct {
		name  string
		wasm  []byte
		input []byte
	}{{"echo (tiny, WAT)", testdata.Echo, []byte("hello")}, {"primes (Go, guest SDK)", testdata.Primes, []byte("0 1000")}}
	for _, m := range mods {
		rawUS, err := medianRounds(*rounds, func() (float64, error) { return timeRaw(ctx, m.wasm, m.input, *execs) })
		if err != nil {
			return fail(exitLocal, "raw %s: %v", m.name, err)
		}
		for _, iso := range []plugins.Isolation{plugins.InProcess, plugins.Process} {
			us, err := medianRounds(*rounds, func() (float64, error) {
				return timeSandbox(ctx, dir, iso, m.wasm, m.input, *execs)
			})
			if err != nil {
				return fail(exitLocal, "%s %s: %v", iso, m.name, err)
			}
			row := overheadRow{Module: m.name, Mode: string(iso), PerExecUS: us, RawUS: rawUS, OverheadUS: us - rawUS}
			rep.Overhead = append(rep.Overhead, row)
			say("  %-24s %-10s %8.1f µs/exec   raw %8.1f µs   overhead %+8.1f µs\n", m.name, iso, us, rawUS, us-rawUS)
		}
	}

	// 2. Cluster throughput against raw wazero on the same cores. The
	// profile covers the cluster's measurements only (and the raw runs
	// between them, under rawThroughput).
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(exitLocal, "--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(exitLocal, "--cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	t0 := time.Now()
	g, err := startLocalGrid(ctx, localGridConfig{dir: filepath.Join(dir, "grid"), nodes: *nodes, isolation: isolation, slots: *slots, log: quietLogger(os.Stderr)})
	if err != nil {
		return fail(exitLocal, "start the embedded cluster: %v", err)
	}
	defer g.close()
	say("\ncluster throughput: %d nodes in this process (QUIC on loopback, %d slots each, %s isolation; ready in %s),\n",
		*nodes, *slots, isolation, time.Since(t0).Round(time.Millisecond))
	say("%d items per job submitted to one node; efficiency = cluster items/s ÷ (raw wazero items/s on %d cores ÷ replicas):\n", *items, cores)
	loads := []struct {
		name   string
		wasm   []byte
		input  []byte
		target float64
	}{{"work (1 ms)", testdata.Work, []byte(rep.WorkInput), 0.75}, {"echo (tiny)", testdata.Echo, []byte("x"), 0.4}}
	for _, l := range loads {
		push, err := g.client.PushModule(ctx, l.wasm)
		if err != nil {
			return fail(exitLocal, "push: %v", err)
		}
		// Warm every node: each fetches and compiles the module, and its
		// workers instantiate it.
		warm := api.JobSpec{Module: push.Hash, Policy: api.Policy{Replicas: *nodes}}
		if _, err := runJob(ctx, g.client, warm, 2**slots, l.input); err != nil {
			return fail(exitLocal, "warm-up of %s: %v", l.name, err)
		}
		ceil, err := sandboxCeiling(ctx, dir, isolation, *nodes**slots, l.wasm, l.input, *items, *rounds, cores)
		if err != nil {
			return fail(exitLocal, "sandbox alone with %s: %v", l.name, err)
		}
		ceil.Items = l.name
		rep.Ceiling = append(rep.Ceiling, ceil)
		say("  %-12s sandbox alone, %d workers fed directly: %7.0f items/s   raw %7.0f items/s   efficiency %.2f (the ceiling below)\n",
			l.name, ceil.Workers, ceil.SandboxPerS, ceil.RawPerS, ceil.Efficiency)
		for _, replicas := range []int{1, 2} {
			spec := api.JobSpec{Module: push.Hash, Policy: api.Policy{Replicas: replicas}}
			row, err := clusterThroughput(ctx, g.client, spec, l.wasm, l.input, *items, *rounds, cores)
			if err != nil {
				return fail(exitLocal, "throughput of %s with replicas %d: %v", l.name, replicas, err)
			}
			row.Items, row.Target = l.name, l.target
			rep.Thru = append(rep.Thru, row)
			say("  %-12s replicas %d   cluster %7.0f items/s   raw %7.0f items/s (%4.0f µs/item/core)   efficiency %.2f (target %.2f)\n",
				l.name, replicas, row.ClusterPerS, row.RawPerS, row.ItemUS, row.Efficiency, row.Target)
		}
	}

	// 3. Submit-to-commit latency of one tiny item.
	say("\nsubmit-to-commit latency, one tiny item per job (%d jobs each):\n", *samples)
	push, err := g.client.PushModule(ctx, testdata.Echo)
	if err != nil {
		return fail(exitLocal, "push: %v", err)
	}
	for _, replicas := range []int{1, 2} {
		spec := api.JobSpec{Module: push.Hash, Policy: api.Policy{Replicas: replicas}}
		ms, err := itemLatency(ctx, g.client, spec, *samples)
		if err != nil {
			return fail(exitLocal, "latency with replicas %d: %v", replicas, err)
		}
		lat := latencyRow{Replicas: replicas, P50MS: percentile(ms, 0.5), P99MS: percentile(ms, 0.99), N: len(ms)}
		rep.Latency = append(rep.Latency, lat)
		say("  replicas %d   p50 %6.2f ms   p99 %6.2f ms\n", replicas, lat.P50MS, lat.P99MS)
	}
	if *asJSON {
		return printJSON(rep)
	}
	return nil
}

func medianRounds(rounds int, f func() (float64, error)) (float64, error) {
	var xs []float64
	for range rounds {
		x, err := f()
		if err != nil {
			return 0, err
		}
		xs = append(xs, x)
	}
	return median(xs), nil
}

// timeRaw is µs per execution of plain wazero, compiled once.
func timeRaw(ctx context.Context, wasm, input []byte, n int) (float64, error) {
	r, err := plugins.NewRaw(ctx, wasm)
	if err != nil {
		return 0, err
	}
	defer r.Close(ctx)
	r.Run(ctx, input) // warm
	t0 := time.Now()
	for range n {
		if _, err := r.Run(ctx, input); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(t0).Microseconds()) / float64(n), nil
}

// timeSandbox is µs per execution through the sandbox, one at a time.
func timeSandbox(ctx context.Context, dir string, iso plugins.Isolation, wasm, input []byte, n int) (float64, error) {
	sd, err := os.MkdirTemp(dir, "sb-")
	if err != nil {
		return 0, err
	}
	sb, err := plugins.Open(ctx, plugins.Config{Dir: sd, Isolation: iso, Workers: 1, Logger: quietLogger(os.Stderr)})
	if err != nil {
		return 0, err
	}
	defer sb.Close()
	h, err := sb.AddModule(ctx, wasm)
	if err != nil {
		return 0, err
	}
	task := plugins.Task{Module: h, ItemID: "bench", Input: input}
	if out := sb.Execute(ctx, task); out.Status != plugins.StatusOK {
		return 0, fmt.Errorf("warm-up: %s: %s", out.Status, out.Message)
	}
	t0 := time.Now()
	for range n {
		if out := sb.Execute(ctx, task); out.Status != plugins.StatusOK {
			return 0, fmt.Errorf("%s: %s", out.Status, out.Message)
		}
	}
	return float64(time.Since(t0).Microseconds()) / float64(n), nil
}

// rawThroughput is items/s of plain wazero with one goroutine per core.
func rawThroughput(ctx context.Context, wasm, input []byte, items, cores int) (float64, error) {
	runners := make([]*plugins.Raw, cores)
	for i := range runners {
		r, err := plugins.NewRaw(ctx, wasm)
		if err != nil {
			return 0, err
		}
		defer r.Close(ctx)
		r.Run(ctx, input)
		runners[i] = r
	}
	t0 := time.Now()
	err := feed(items, cores, func(i int) error {
		_, err := runners[i].Run(ctx, input)
		return err
	}, func() {
		// Labelled, so that --cpuprofile can tell the baseline from the cluster.
		pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("bench", "raw")))
	})
	return float64(items) / time.Since(t0).Seconds(), err
}

// feed makes n calls of f from g goroutines (f gets the goroutine's
// index), each first running setup when it is set; the first error stops
// them all.
func feed(n, g int, f func(i int) error, setup func()) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		left = n
		ferr error
	)
	for i := range g {
		wg.Go(func() {
			if setup != nil {
				setup()
			}
			for {
				mu.Lock()
				if left == 0 || ferr != nil {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				if err := f(i); err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ferr
}

// sandboxCeiling measures one sandbox with workers workers, fed by as many
// goroutines, against raw wazero on the same cores, round by round: the
// cost of isolation alone, without any scheduling.
func sandboxCeiling(ctx context.Context, dir string, iso plugins.Isolation, workers int, wasm, input []byte, items, rounds, cores int) (ceilingRow, error) {
	row := ceilingRow{Workers: workers}
	sd, err := os.MkdirTemp(dir, "ceiling-")
	if err != nil {
		return row, err
	}
	sb, err := plugins.Open(ctx, plugins.Config{Dir: sd, Isolation: iso, Workers: workers, Logger: quietLogger(os.Stderr)})
	if err != nil {
		return row, err
	}
	defer sb.Close()
	h, err := sb.AddModule(ctx, wasm)
	if err != nil {
		return row, err
	}
	task := plugins.Task{Module: h, ItemID: "bench", Input: input}
	run := func(n int) error {
		return feed(n, workers, func(int) error {
			if out := sb.Execute(ctx, task); out.Status != plugins.StatusOK {
				return fmt.Errorf("%s: %s", out.Status, out.Message)
			}
			return nil
		}, nil)
	}
	if err := run(2 * workers); err != nil { // every worker up, the module compiled
		return row, err
	}
	var raws, sbs, effs []float64
	for range rounds {
		rawPS, err := rawThroughput(ctx, wasm, input, items, cores)
		if err != nil {
			return row, err
		}
		t0 := time.Now()
		if err := run(items); err != nil {
			return row, err
		}
		ps := float64(items) / time.Since(t0).Seconds()
		raws, sbs, effs = append(raws, rawPS), append(sbs, ps), append(effs, ps/rawPS)
	}
	row.RawPerS, row.SandboxPerS, row.Efficiency = median(raws), median(sbs), median(effs)
	return row, nil
}

// clusterThroughput measures a job on the cluster against raw wazero on
// the same cores, round by round (raw, then the cluster), so that both see
// the same machine; the efficiency is the median of the rounds' own.
func clusterThroughput(ctx context.Context, c *sdk.Client, spec api.JobSpec, wasm, input []byte, items, rounds, cores int) (throughputRow, error) {
	row := throughputRow{Replicas: max(1, spec.Policy.Replicas)}
	var raws, clus, effs []float64
	for range rounds {
		rawPS, err := rawThroughput(ctx, wasm, input, items, cores)
		if err != nil {
			return row, err
		}
		t0 := time.Now()
		n, err := runJob(ctx, c, spec, items, input)
		if err != nil {
			return row, err
		}
		ps := float64(n) / time.Since(t0).Seconds()
		raws, clus, effs = append(raws, rawPS), append(clus, ps), append(effs, ps/(rawPS/float64(row.Replicas)))
	}
	row.RawPerS, row.ClusterPerS, row.Efficiency = median(raws), median(clus), median(effs)
	row.ItemUS = 1e6 * float64(cores) / row.RawPerS
	return row, nil
}

// runJob submits items copies of input and reads every result.
func runJob(ctx context.Context, c *sdk.Client, spec api.JobSpec, items int, input []byte) (int, error) {
	reply, err := c.Submit(ctx, spec, func(yield func([]byte, error) bool) {
		for range items {
			if !yield(input, nil) {
				return
			}
		}
	})
	if err != nil {
		return 0, err
	}
	rs := c.Results(reply.JobID, sdk.ResultsOptions{Follow: true, NoOutput: true})
	defer rs.Close()
	n := 0
	for r, err := range rs.All(ctx) {
		if err != nil {
			return n, err
		}
		if !r.OK() {
			return n, fmt.Errorf("item %d: %s: %s", r.Index, r.Status, r.Message)
		}
		n++
	}
	if n != items {
		return n, fmt.Errorf("read %d results of %d", n, items)
	}
	return n, nil
}

// itemLatency is ms from submitting a one-item job to holding its
// committed result, for samples jobs after a few to warm up.
func itemLatency(ctx context.Context, c *sdk.Client, spec api.JobSpec, samples int) ([]float64, error) {
	var ms []float64
	for i := range samples + 5 {
		t0 := time.Now()
		if _, err := runJob(ctx, c, spec, 1, []byte("ping")); err != nil {
			return nil, err
		}
		if i >= 5 {
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
	}
	return ms, nil
}
