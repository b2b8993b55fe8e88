package main

import (
	"context"
	"flag"
	"fmt"
	"os"
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
// over rounds, and every ratio is against a baseline measured in the same run.
type benchReport struct {
	Cores    int                `json:"cores"`
	Overhead []overheadRow      `json:"overhead"`
	Thru     []throughputRow    `json:"throughput"`
	Latency  map[string]latency `json:"latency"`
}

type overheadRow struct {
	Module     string  `json:"module"`
	Mode       string  `json:"mode"`
	PerExecUS  float64 `json:"per_exec_us"`
	RawUS      float64 `json:"raw_us"`
	OverheadUS float64 `json:"overhead_us"`
}

type throughputRow struct {
	Items    string  `json:"items"`
	Mode     string  `json:"mode"`
	NodePerS float64 `json:"node_items_per_s"`
	RawPerS  float64 `json:"raw_items_per_s"`
	Ratio    float64 `json:"ratio"`
	ItemUS   float64 `json:"raw_item_us"`
}

type latency struct {
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	N     int     `json:"samples"`
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

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 3, "rounds per measurement (medians are reported)")
	execs := fs.Int("execs", 300, "executions per overhead round")
	items := fs.Int("items", 2000, "items per throughput round")
	samples := fs.Int("samples", 200, "single-item jobs for the latency measurement")
	asJSON := fs.Bool("json", false, "print JSON")
	slots := fs.Int("slots", 0, "node execution slots (default: the node's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the node side) to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rounds < 1 || *execs < 10 || *items < 10 || *samples < 10 {
		return fail(exitUsage, "--rounds ≥ 1, --execs, --items and --samples ≥ 10")
	}
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
	cores := runtime.GOMAXPROCS(0)
	rep := benchReport{Cores: cores, Latency: map[string]latency{}}
	say("gridnode bench: %d cores; medians of %d rounds; baselines are raw wazero in this run\n", cores, *rounds)

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

	// 2. Node throughput against raw wazero on the same cores.
	say("\nnode throughput (%d items through QUIC, the scheduler and the store) vs raw wazero on %d cores:\n", *items, cores)
	loads := []struct {
		name  string
		wasm  []byte
		input []byte
	}{{"work (1 ms)", testdata.Work, []byte(fmt.Sprint(workN))}, {"echo (tiny)", testdata.Echo, []byte("x")}}
	for _, l := range loads {
		for _, iso := range []plugins.Isolation{plugins.Process, plugins.InProcess} {
			row, err := throughput(ctx, dir, iso, *slots, cores, l.wasm, l.input, *items, *rounds)
			if err != nil {
				return fail(exitLocal, "throughput: %v", err)
			}
			row.Items = l.name
			rep.Thru = append(rep.Thru, row)
			say("  %-12s %-10s node %8.0f items/s   raw %8.0f items/s (%4.0f µs/item/core)   ratio %.2f\n", l.name, iso, row.NodePerS, row.RawPerS, row.ItemUS, row.Ratio)
		}
	}

	// 3. Submit-to-result latency of one tiny item.
	say("\nsubmit-to-result latency, one tiny item per job (%d jobs):\n", *samples)
	for _, iso := range []plugins.Isolation{plugins.Process, plugins.InProcess} {
		ms, err := itemLatency(ctx, dir, iso, *slots, *samples)
		if err != nil {
			return fail(exitLocal, "latency: %v", err)
		}
		lat := latency{P50MS: percentile(ms, 0.5), P99MS: percentile(ms, 0.99), N: len(ms)}
		rep.Latency[string(iso)] = lat
		say("  %-10s p50 %.2f ms   p99 %.2f ms\n", iso, lat.P50MS, lat.P99MS)
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
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		left = items
		ferr error
	)
	t0 := time.Now()
	for _, r := range runners {
		wg.Go(func() {
			for {
				mu.Lock()
				if left == 0 || ferr != nil {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				if _, err := r.Run(ctx, input); err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return float64(items) / time.Since(t0).Seconds(), ferr
}

// throughput measures a job on an embedded node against raw wazero on the
// same cores, round by round (raw, then node), so that both see the same
// machine; the ratio is the median of the rounds' ratios.
func throughput(ctx context.Context, dir string, iso plugins.Isolation, slots, cores int, wasm, input []byte, items, rounds int) (throughputRow, error) {
	row := throughputRow{Mode: string(iso)}
	nd, err := os.MkdirTemp(dir, "node-")
	if err != nil {
		return row, err
	}
	e, err := startEmbedded(ctx, nd, iso, slots, quietLogger(os.Stderr))
	if err != nil {
		return row, err
	}
	defer e.close()
	push, err := e.client.PushModule(ctx, wasm)
	if err != nil {
		return row, err
	}
	spec := api.JobSpec{Module: push.Hash}
	// Warm the workers' compiled modules.
	if _, err := runJob(ctx, e.client, spec, 2*e.node.Info().Slots, input); err != nil {
		return row, err
	}
	var raws, nodes, ratios []float64
	for range rounds {
		rawPS, err := rawThroughput(ctx, wasm, input, items, cores)
		if err != nil {
			return row, err
		}
		t0 := time.Now()
		n, err := runJob(ctx, e.client, spec, items, input)
		if err != nil {
			return row, err
		}
		nodePS := float64(n) / time.Since(t0).Seconds()
		raws, nodes, ratios = append(raws, rawPS), append(nodes, nodePS), append(ratios, nodePS/rawPS)
	}
	row.RawPerS, row.NodePerS, row.Ratio = median(raws), median(nodes), median(ratios)
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

// itemLatency is ms from submitting a one-item job to holding its result.
func itemLatency(ctx context.Context, dir string, iso plugins.Isolation, slots, samples int) ([]float64, error) {
	nd, err := os.MkdirTemp(dir, "lat-")
	if err != nil {
		return nil, err
	}
	e, err := startEmbedded(ctx, nd, iso, slots, quietLogger(os.Stderr))
	if err != nil {
		return nil, err
	}
	defer e.close()
	push, err := e.client.PushModule(ctx, testdata.Echo)
	if err != nil {
		return nil, err
	}
	spec := api.JobSpec{Module: push.Hash}
	var ms []float64
	for i := range samples + 5 {
		t0 := time.Now()
		if _, err := runJob(ctx, e.client, spec, 1, []byte("ping")); err != nil {
			return nil, err
		}
		if i >= 5 { // the first few warm the workers
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
	}
	return ms, nil
}
