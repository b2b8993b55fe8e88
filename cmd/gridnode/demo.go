package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
)

// embedded is a node started inside this process, with a client for it.
type embedded struct {
	node   *sched.Node
	client *sdk.Client
	dir    string
}

// startEmbedded starts a node on a loopback port in dir and dials it over
// real QUIC with a client certificate from the node's CA.
func startEmbedded(ctx context.Context, dir string, iso plugins.Isolation, slots int, log *slog.Logger) (*embedded, error) {
	n, err := sched.StartNode(ctx, sched.Config{
		DataDir: dir, ListenAddr: "127.0.0.1:0", Isolation: iso, Slots: slots, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	cert, key, err := transport.IssueClient(n.TLSDir(), "embedded", filepath.Join(dir, "client"))
	if err != nil {
		n.Close()
		return nil, err
	}
	c, err := sdk.Dial(ctx, sdk.Config{Addr: n.Addr(), CA: filepath.Join(n.TLSDir(), "ca.pem"), Cert: cert, Key: key})
	if err != nil {
		n.Close()
		return nil, err
	}
	return &embedded{node: n, client: c, dir: dir}, nil
}

func (e *embedded) close() {
	e.client.Close()
	e.node.Close()
}

// quietLogger logs warnings and errors only.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode demo", flag.ContinueOnError)
	items := fs.Int("items", 1000, "work items: ranges of --width numbers each")
	width := fs.Int("width", 1000, "numbers per item")
	iso := fs.String("isolation", "process", "process or inprocess")
	keep := fs.Bool("keep", false, "keep the node's data dir")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *items < 1 || *width < 1 || int64(*items)*int64(*width) > 1e9 {
		return fail(exitUsage, "--items and --width must be positive, with items×width ≤ 1e9")
	}
	dir, err := os.MkdirTemp("", "gridnode-demo-")
	if err != nil {
		return fail(exitLocal, "%v", err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("gridnode demo: counting the primes below %d as %d work items on an embedded node\n", *items**width, *items)
	start := time.Now()
	e, err := startEmbedded(ctx, dir, plugins.Isolation(*iso), 0, quietLogger(os.Stderr))
	if err != nil {
		return fail(exitLocal, "start the embedded node: %v", err)
	}
	defer e.close()
	info := e.node.Info()
	fmt.Printf("  node %s listening on %s (QUIC, mutual TLS), %d slots, %s isolation, data in %s\n", info.NodeID, info.Addr, info.Slots, info.Isolation, dir)

	push, err := e.client.PushModule(ctx, testdata.Primes)
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
	reply, err := e.client.Submit(ctx, api.JobSpec{Name: "primes", Module: push.Hash}, inputs)
	if err != nil {
		return nodeError(err)
	}
	fmt.Printf("  job %s accepted: %d items\n", reply.JobID, reply.Items)

	outDir := filepath.Join(dir, "out")
	os.MkdirAll(outDir, 0o755)
	prog := newProgress(os.Stderr, reply.JobID, reply.Items)
	sum, err := collect(ctx, e.client, reply, outDir, func(i uint64) string { return fmt.Sprintf("%06d.out", i) }, prog)
	prog.done()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)

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
	st, _ := e.client.Status(ctx, reply.JobID)
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
	fmt.Printf("  node: %d results committed (", st.Committed+st.Failed)
	printCounts(os.Stdout, st.ByStatus)
	fmt.Println(")")
	if sum.Failed > 0 || wrong > 0 || total != want || sum.State != api.JobDone {
		return fail(exitItemsFailed, "the demo's results are NOT all correct")
	}
	fmt.Println("  every result verified: OK")
	return nil
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
