package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sched"
	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/transport"
)

// nodeFlags are the flags of agent and dev.
type nodeFlags struct {
	data, listen, nodeID, labels, metrics, isolation, profile, logLevel string
	advertise, join, clusterCA                                          string
	slots, monitors                                                     int
	noProfile                                                           bool
}

func (f *nodeFlags) register(fs *flag.FlagSet, dataDefault, listenDefault, metricsDefault string, monitorsDefault int) {
	fs.StringVar(&f.data, "data", dataDefault, "data dir: identity, TLS material, modules, compile cache, jobs")
	fs.StringVar(&f.listen, "listen", listenDefault, "QUIC address to serve nodes and clients on (UDP)")
	fs.StringVar(&f.advertise, "advertise", "", "address other nodes dial to reach this one (default: --listen, with 0.0.0.0 as 127.0.0.1)")
	fs.StringVar(&f.join, "join", "", "addresses of cluster members to join through, comma-separated (default: found a new cluster, or rejoin the one in --data)")
	fs.IntVar(&f.monitors, "monitors", monitorsDefault, "how many monitors the cluster keeps: 1, 3 or 5 (read by the node that founds it and by the monitors' leader)")
	fs.StringVar(&f.clusterCA, "cluster-ca", "", "directory holding the cluster's ca.pem and ca.key (a member's <data>/tls): copied into --data on first start so this node can join")
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
	if f.monitors != 1 && f.monitors != 3 && f.monitors != 5 {
		return nil, nil, fail(exitUsage, "--monitors %d: use 1, 3 or 5", f.monitors)
	}
	var join []string
	for _, a := range strings.Split(f.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, nil, fail(exitUsage, "--join %q: give host:port addresses of members, comma-separated", a)
			}
			join = append(join, a)
		}
	}
	if f.clusterCA != "" {
		if err := copyClusterCA(f.clusterCA, filepath.Join(f.data, "tls")); err != nil {
			return nil, nil, fail(exitLocal, "--cluster-ca: %v", err)
		}
	}
	tel, err := startTelemetry(f.metrics, log)
	if err != nil {
		return nil, nil, fail(exitLocal, "%v", err)
	}
	n, err := sched.StartNode(ctx, sched.Config{
		DataDir: f.data, ListenAddr: f.listen, NodeID: f.nodeID, Labels: labels,
		Slots: f.slots, Isolation: iso, Logger: log,
		Advertise: f.advertise, Join: join, Monitors: f.monitors,
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

// copyClusterCA copies the cluster CA into a new node's TLS dir, so that
// the node's certificate is issued by the CA every member trusts. A node
// that already has a CA keeps it: a data dir belongs to one cluster.
func copyClusterCA(from, tlsDir string) error {
	caCert := filepath.Join(from, "ca.pem")
	if _, err := os.Stat(caCert); err != nil {
		return fmt.Errorf("%s: %w (point --cluster-ca at a member's <data>/tls directory)", caCert, err)
	}
	if _, err := os.Stat(filepath.Join(tlsDir, "ca.pem")); err == nil {
		return nil
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{"ca.pem", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if errors.Is(err, os.ErrNotExist) && name == "ca.key" {
			return fmt.Errorf("%s has no ca.key: without it this node cannot issue its own certificate; copy node.pem and node.key issued for it into %s instead", from, tlsDir)
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tlsDir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
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
	f.register(fs, "", "0.0.0.0:7480", "127.0.0.1:7481", 3)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.data == "" {
		return fail(exitUsage, "--data is required: the directory where this node keeps its identity and jobs")
	}
	// The node outlives the signal that stops it: it leaves the cluster
	// first, which takes a round trip to the monitors.
	n, tel, err := startNode(context.WithoutCancel(ctx), &f)
	if err != nil {
		return err
	}
	defer tel.close()
	defer n.Close()
	select {
	case <-n.Left():
		fmt.Fprintln(os.Stderr, "gridnode agent: left the cluster; stopping")
		time.Sleep(200 * time.Millisecond) // let the reply to `gridnode leave` reach its client
		return nil
	case <-ctx.Done():
	}
	fmt.Fprintln(os.Stderr, "gridnode agent: leaving the cluster")
	lctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Leave(lctx); err != nil {
		fmt.Fprintf(os.Stderr, "gridnode agent: could not leave cleanly (%v); stopping anyway, the others will declare this node dead\n", err)
	}
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
	f.register(fs, filepath.Join(base, "gridnode", "dev"), "127.0.0.1:7480", "127.0.0.1:7481", 1)
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
