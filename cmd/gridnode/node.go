package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/transport"
)

// nodeFlags are the flags of agent and dev.
type nodeFlags struct {
	data, listen, nodeID, labels, metrics, isolation, profile, logLevel string
	slots                                                               int
	noProfile                                                           bool
}

func (f *nodeFlags) register(fs *flag.FlagSet, dataDefault, listenDefault, metricsDefault string) {
	fs.StringVar(&f.data, "data", dataDefault, "data dir: identity, TLS material, modules, compile cache, jobs")
	fs.StringVar(&f.listen, "listen", listenDefault, "QUIC address to serve clients on (UDP)")
	fs.StringVar(&f.nodeID, "node-id", "", "node ID (default: the one stored in the data dir, or a new one)")
	fs.StringVar(&f.labels, "labels", "", "failure-domain labels, e.g. host=h1,zone=z1")
	fs.StringVar(&f.metrics, "metrics", metricsDefault, "HTTP address for /metrics and /healthz ('' turns it off)")
	fs.StringVar(&f.isolation, "isolation", "process", "where executions run: process (killable worker processes) or inprocess")
	fs.IntVar(&f.slots, "slots", 0, "concurrent executions (default: cores, plus one with process isolation)")
	fs.StringVar(&f.profile, "profile", sdk.DefaultProfilePath(), "client profile to write for the CLI")
	fs.BoolVar(&f.noProfile, "no-profile", false, "do not write a client profile")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return &exitError{code: exitOK, err: errQuiet}
		}
		return &exitError{code: exitUsage, err: errQuiet}
	}
	return nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fail(exitUsage, "--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// startNode starts a node from flags, its telemetry, and writes a client
// profile for the local user.
func startNode(ctx context.Context, f *nodeFlags) (*sched.Node, *telemetry, error) {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return nil, nil, err
	}
	labels, err := grid.ParseLabels(f.labels)
	if err != nil {
		return nil, nil, fail(exitUsage, "--labels: %v", err)
	}
	iso := plugins.Isolation(f.isolation)
	if iso != plugins.Process && iso != plugins.InProcess {
		return nil, nil, fail(exitUsage, "--isolation %q: use process or inprocess", f.isolation)
	}
	if f.slots < 0 {
		return nil, nil, fail(exitUsage, "--slots %d: give a positive number, or 0 for the default", f.slots)
	}
	tel, err := startTelemetry(f.metrics, log)
	if err != nil {
		return nil, nil, fail(exitLocal, "%v", err)
	}
	n, err := sched.StartNode(ctx, sched.Config{
		DataDir: f.data, ListenAddr: f.listen, NodeID: f.nodeID, Labels: labels,
		Slots: f.slots, Isolation: iso, Logger: log,
	})
	if err != nil {
		tel.close()
		return nil, nil, fail(exitLocal, "%v", err)
	}
	if !f.noProfile {
		if err := writeProfile(n, f.profile); err != nil {
			n.Close()
			tel.close()
			return nil, nil, fail(exitLocal, "write client profile: %v", err)
		}
	}
	return n, tel, nil
}

// writeProfile issues a client certificate from the node's CA and writes a
// profile that points the CLI at the node.
func writeProfile(n *sched.Node, path string) error {
	dir := filepath.Join(n.TLSDir(), "clients")
	cert, key, err := transport.IssueClient(n.TLSDir(), "cli", dir)
	if err != nil {
		return err
	}
	return sdk.Profile{
		Addr: dialAddr(n.Addr()), CA: filepath.Join(n.TLSDir(), "ca.pem"),
		Cert: cert, Key: key, NodeID: n.Identity().NodeID,
	}.Save(path)
}

// dialAddr turns a wildcard listen address into one a local client can dial.
func dialAddr(addr string) string {
	for _, wild := range []string{"0.0.0.0:", "[::]:", ":"} {
		if strings.HasPrefix(addr, wild) {
			return "127.0.0.1:" + strings.TrimPrefix(addr, wild)
		}
	}
	return addr
}

func runAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode agent", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs, "", "0.0.0.0:7480", "127.0.0.1:7481")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.data == "" {
		return fail(exitUsage, "--data is required: the directory where this node keeps its identity and jobs")
	}
	n, tel, err := startNode(ctx, &f)
	if err != nil {
		return err
	}
	defer tel.close()
	defer n.Close()
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "gridnode agent: stopping")
	return nil
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode dev", flag.ContinueOnError)
	var f nodeFlags
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	f.register(fs, filepath.Join(base, "gridnode", "dev"), "127.0.0.1:7480", "127.0.0.1:7481")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	n, tel, err := startNode(ctx, &f)
	if err != nil {
		return err
	}
	defer tel.close()
	defer n.Close()
	id := n.Identity()
	fmt.Printf("gridnode dev: node %s (incarnation %d) listening on %s (QUIC)\n", id.NodeID, id.Incarnation, n.Addr())
	fmt.Printf("  data dir:  %s\n", f.data)
	if tel.addr != "" {
		fmt.Printf("  metrics:   http://%s/metrics\n", tel.addr)
	}
	if !f.noProfile {
		fmt.Printf("  profile:   %s (the client commands read it; override with --profile or %s)\n", f.profile, sdk.EnvProfile)
	}
	fmt.Println("Try, in another terminal:")
	fmt.Println("  go run ./cmd/gridnode job run testdata/primes/primes.wasm --lines testdata/primes/ranges.txt --out /tmp/primes-out")
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "gridnode dev: stopping")
	return nil
}
