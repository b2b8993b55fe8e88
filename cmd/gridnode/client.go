package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// clientFlags are shared by the client commands.
type clientFlags struct {
	profile, addr string
	json          bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "", "client profile (default $"+sdk.EnvProfile+" or "+sdk.DefaultProfilePath()+")")
	fs.StringVar(&f.addr, "addr", "", "node address, overriding the profile's (also $"+sdk.EnvAddr+")")
	fs.BoolVar(&f.json, "json", false, "print JSON for scripts")
}

func (f *clientFlags) dial(ctx context.Context) (*sdk.Client, error) {
	p, err := sdk.LoadProfile(f.profile)
	if err != nil {
		return nil, fail(exitUnreachable, "%v", err)
	}
	if f.addr != "" {
		p.Addr = f.addr
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := sdk.Dial(dctx, sdk.ConfigFromProfile(p))
	if err != nil {
		return nil, fail(exitUnreachable, "%v (is the node running? `gridnode dev` starts one)", err)
	}
	return c, nil
}

// nodeError maps an error from a call to its exit code.
func nodeError(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return &exitError{code: exitRefused, err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &exitError{code: exitInterrupted, err: err}
	}
	return &exitError{code: exitUnreachable, err: err}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runModulePush(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode module push", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fail(exitUsage, "give one module file: gridnode module push FILE.wasm")
	}
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	hash, existed, err := pushFile(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(api.ModulePushReply{Hash: hash, Existed: existed})
	}
	fmt.Println(hash)
	return nil
}

func pushFile(ctx context.Context, c *sdk.Client, path string) (string, bool, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return "", false, fail(exitLocal, "read module: %v", err)
	}
	r, err := c.PushModule(ctx, wasm)
	if err != nil {
		return "", false, nodeError(fmt.Errorf("push %s: %w", path, err))
	}
	return r.Hash, r.Existed, nil
}

// jobFlags describe a job: its inputs and its policy.
type jobFlags struct {
	clientFlags
	rangeSpec, lines, dir, name, files, idem string
	args, env                                multiFlag
	memory                                   string
	deadline, ttl, itemDeadline              time.Duration
	stdoutLimit, stderrLimit                 string
	replicas, quorum, attempts, maxErrors    int
	nondeterministic, adaptive               bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (f *jobFlags) register(fs *flag.FlagSet) {
	f.clientFlags.register(fs)
	fs.StringVar(&f.rangeSpec, "range", "", "inputs: one item per integer in LO:HI (HI exclusive), e.g. 0:1000")
	fs.StringVar(&f.lines, "lines", "", "inputs: one item per line of this file ('-' for stdin)")
	fs.StringVar(&f.dir, "dir", "", "inputs: one item per file in this directory")
	fs.StringVar(&f.name, "name", "", "job name (argv[0] of the module)")
	fs.Var(&f.args, "arg", "argument passed to the module (repeatable)")
	fs.Var(&f.env, "env", "KEY=VALUE environment variable for the module (repeatable)")
	fs.StringVar(&f.files, "files", "", "directory mounted read-only at /job for every item")
	fs.StringVar(&f.memory, "memory", "", "memory limit per execution, e.g. 256MiB (default: the node's)")
	fs.DurationVar(&f.deadline, "deadline", 0, "wall-clock limit per execution, e.g. 30s (default: the node's)")
	fs.StringVar(&f.stdoutLimit, "stdout-limit", "", "output limit per item, e.g. 1MiB")
	fs.StringVar(&f.stderrLimit, "stderr-limit", "", "log kept per item, e.g. 64KiB")
	fs.IntVar(&f.replicas, "replicas", 1, "executions of each item, on distinct hosts (1-16)")
	fs.IntVar(&f.quorum, "quorum", 0, "equal outcomes that commit an item (default: --replicas)")
	fs.IntVar(&f.attempts, "attempts", 0, "most executions ever started per item, lost ones included (default: --replicas + 2)")
	fs.IntVar(&f.maxErrors, "max-errors", 0, "lost executions an item tolerates; one more fails it (default 3)")
	fs.DurationVar(&f.itemDeadline, "item-deadline", 0, "how long one execution may take from dispatch to its report before the item runs elsewhere (default: --deadline + 30s)")
	fs.BoolVar(&f.adaptive, "adaptive", false, "adaptive replication: one execution per item, checked by the other replicas unless its node has earned trust (needs --replicas 2 or more)")
	fs.BoolVar(&f.nondeterministic, "nondeterministic", false, "give modules the real clock and randomness")
	fs.DurationVar(&f.ttl, "ttl", 0, "how long results stay readable after the job ends (default 72h)")
	fs.StringVar(&f.idem, "idempotency-key", "", "a retried submit with the same key returns the original job")
}

// parseSize reads "1048576", "64KiB", "256MiB", "1GiB" (also KB/MB/GB as powers of 1000).
func parseSize(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	num, mult := s, uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("size %q: write a positive number with an optional unit, like 64KiB or 256MiB", s)
	}
	return v * mult, nil
}

// spec builds the job spec (without the module) from flags.
func (f *jobFlags) spec() (api.JobSpec, error) {
	spec := api.JobSpec{Name: f.name, Args: f.args, IdempotencyKey: f.idem}
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return spec, fail(exitUsage, "--env %q: write KEY=VALUE", kv)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	mem, err := parseSize(f.memory)
	if err != nil {
		return spec, fail(exitUsage, "--memory: %v", err)
	}
	so, err := parseSize(f.stdoutLimit)
	if err != nil {
		return spec, fail(exitUsage, "--stdout-limit: %v", err)
	}
	se, err := parseSize(f.stderrLimit)
	if err != nil {
		return spec, fail(exitUsage, "--stderr-limit: %v", err)
	}
	if f.deadline < 0 || f.ttl < 0 || f.itemDeadline < 0 || f.replicas < 0 || f.quorum < 0 || f.attempts < 0 || f.maxErrors < 0 {
		return spec, fail(exitUsage, "--deadline, --ttl, --item-deadline, --replicas, --quorum, --attempts and --max-errors cannot be negative")
	}
	// Combinations (quorum over replicas, adaptive with one replica, …) are
	// the node's to judge: it refuses them with a message that says why.
	spec.Policy = api.Policy{
		Limits:   api.Limits{MemoryBytes: mem, Deadline: f.deadline, StdoutBytes: int(so), StderrBytes: int(se)},
		Attempts: f.attempts, Nondeterministic: f.nondeterministic, ResultTTL: f.ttl,
		Replicas: f.replicas, Quorum: f.quorum, MaxErrors: f.maxErrors, ItemDeadline: f.itemDeadline, Adaptive: f.adaptive,
	}
	if f.files != "" {
		files, err := readTree(f.files)
		if err != nil {
			return spec, fail(exitLocal, "--files: %v", err)
		}
		spec.Files = files
	}
	return spec, nil
}

// readTree reads a directory's regular files into path → bytes.
func readTree(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	total := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		total += len(b)
		if total > 4<<20 {
			return fmt.Errorf("job files in %s exceed 4 MiB; ship large data inside the module or split it into items", root)
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	return out, err
}

// inputs builds the item source from exactly one of --range, --lines, --dir.
// names gives each item's output file name.
func (f *jobFlags) inputs() (items iter.Seq2[[]byte, error], names func(idx uint64) string, closeFn func(), err error) {
	given := 0
	for _, s := range []string{f.rangeSpec, f.lines, f.dir} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return nil, nil, nil, fail(exitUsage, "give the inputs with exactly one of --range LO:HI, --lines FILE or --dir DIR")
	}
	names = func(idx uint64) string { return fmt.Sprintf("%06d.out", idx) }
	closeFn = func() {}
	switch {
	case f.rangeSpec != "":
		lo, hi, ok := strings.Cut(f.rangeSpec, ":")
		l, err1 := strconv.ParseInt(lo, 10, 64)
		h, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil || h <= l {
			return nil, nil, nil, fail(exitUsage, "--range %q: write LO:HI with LO < HI, e.g. 0:1000", f.rangeSpec)
		}
		items = sdk.Range(l, h)
	case f.lines != "":
		r := io.Reader(os.Stdin)
		if f.lines != "-" {
			fh, err := os.Open(f.lines)
			if err != nil {
				return nil, nil, nil, fail(exitLocal, "--lines: %v", err)
			}
			r, closeFn = fh, func() { fh.Close() }
		}
		items = sdk.Lines(r)
	default:
		fileNames, it, err := sdk.DirFiles(f.dir)
		if err != nil {
			return nil, nil, nil, fail(exitLocal, "--dir: %v", err)
		}
		if len(fileNames) == 0 {
			return nil, nil, nil, fail(exitUsage, "--dir %s has no files: each file is one item", f.dir)
		}
		items = it
		names = func(idx uint64) string {
			if idx < uint64(len(fileNames)) {
				return fileNames[idx] + ".out"
			}
			return fmt.Sprintf("%06d.out", idx)
		}
	}
	return items, names, closeFn, nil
}

// submit pushes the module and submits the job described by flags.
func submit(ctx context.Context, c *sdk.Client, f *jobFlags, module string) (api.SubmitReply, func(uint64) string, error) {
	spec, err := f.spec()
	if err != nil {
		return api.SubmitReply{}, nil, err
	}
	items, names, closeFn, err := f.inputs()
	if err != nil {
		return api.SubmitReply{}, nil, err
	}
	defer closeFn()
	if strings.HasPrefix(module, "sha256:") {
		spec.Module = module
	} else {
		if spec.Module, _, err = pushFile(ctx, c, module); err != nil {
			return api.SubmitReply{}, nil, err
		}
		if spec.Name == "" {
			spec.Name = strings.TrimSuffix(filepath.Base(module), ".wasm")
		}
	}
	reply, err := c.Submit(ctx, spec, items)
	if err != nil {
		return reply, nil, nodeError(fmt.Errorf("submit: %w", err))
	}
	return reply, names, nil
}

// positionalArg takes the command's one positional argument, given before
// or after the flags; missing says what to give when there is none.
func positionalArg(fs *flag.FlagSet, args []string, missing string) (string, error) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if arg == "" && fs.NArg() == 1 {
		arg = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", fail(exitUsage, "unexpected arguments %q: give one argument, then flags", fs.Args())
	}
	if arg == "" {
		return "", fail(exitUsage, "%s", missing)
	}
	return arg, nil
}

const (
	needModule = "give a module: a .wasm file or a pushed module's sha256:… hash"
	needJob    = "give a job ID (see `gridnode job list`)"
)

func runJobSubmit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode job submit", flag.ContinueOnError)
	var f jobFlags
	f.register(fs)
	module, err := positionalArg(fs, args, needModule)
	if err != nil {
		return err
	}
	c, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	reply, _, err := submit(ctx, c, &f, module)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(reply)
	}
	fmt.Println(reply.JobID)
	return nil
}

func runJobStatus(ctx context.Context, args []string) error {
	return jobCall(ctx, "gridnode job status", args, (*sdk.Client).Status)
}

func runJobCancel(ctx context.Context, args []string) error {
	return jobCall(ctx, "gridnode job cancel", args, (*sdk.Client).Cancel)
}

// jobCall runs a call that takes a job ID and returns its status.
func jobCall(ctx context.Context, name string, args []string, call func(*sdk.Client, context.Context, string) (api.JobStatus, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	job, err := positionalArg(fs, args, needJob)
	if err != nil {
		return err
	}
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := call(c, ctx, job)
	if err != nil {
		return nodeError(err)
	}
	if cf.json {
		return printJSON(st)
	}
	printStatus(os.Stdout, st)
	return nil
}

func printStatus(w io.Writer, st api.JobStatus) {
	fmt.Fprintf(w, "job %s (%s) %s\n", st.JobID, st.Name, st.State)
	fmt.Fprintf(w, "  items %d: %d ok, %d failed, %d running, %d pending\n", st.Items, st.Committed, st.Failed, st.Running, st.Pending)
	if len(st.ByStatus) > 0 {
		fmt.Fprint(w, "  outcomes: ")
		printCounts(w, st.ByStatus)
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  module %s, created %s", st.Module, st.Created.Local().Format(time.DateTime))
	if !st.Finished.IsZero() {
		fmt.Fprintf(w, ", finished %s (%s), results kept until %s", st.Finished.Local().Format(time.DateTime),
			st.Finished.Sub(st.Created).Round(time.Millisecond), st.Expires.Local().Format(time.DateTime))
	}
	fmt.Fprintln(w)
	if len(st.Waiting) > 0 {
		why := keysByCount(st.Waiting)
		fmt.Fprint(w, "  not done:")
		for i, k := range why {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, " %d %s", st.Waiting[k], k)
		}
		fmt.Fprintln(w)
	}
	const showItems = 5
	for i, it := range st.Unfinished {
		if i == showItems {
			fmt.Fprintf(w, "  … %d more listed (--json shows them)\n", len(st.Unfinished)-showItems)
			break
		}
		fmt.Fprintf(w, "  item %d: %s", it.Index, it.Why)
		if it.Executions > 0 {
			fmt.Fprintf(w, ", %d execution%s", it.Executions, plural(it.Executions))
		}
		if it.Coordinator != "" {
			fmt.Fprintf(w, ", coordinator %s", it.Coordinator)
		}
		if len(it.Executors) > 0 {
			fmt.Fprintf(w, ", on %s", strings.Join(it.Executors, ", "))
		}
		if it.Resumed > 0 {
			fmt.Fprintf(w, " (%d resumed from a checkpoint)", it.Resumed)
		}
		if len(it.Votes) > 0 {
			fmt.Fprintf(w, "; votes %s", voteLine(it.Votes, nil))
		}
		fmt.Fprintln(w)
	}
	for _, q := range st.Quarantined {
		fmt.Fprintf(w, "  quarantined: node %s gets no items of module %s until %s (its results kept disagreeing)\n",
			q.Node, shortDigest(q.Module), q.Until.Local().Format(time.DateTime))
	}
}

// shortDigest is a digest's first 12 hex characters, without its
// "sha256:" prefix: enough to tell outcomes apart by eye.
func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// voteLine writes votes as "3f2a9c0d1e2b → n1, n2; 77aa01be33c4 → n3",
// naming each node with name when it is not nil.
func voteLine(votes []api.Vote, name func(string) string) string {
	var b strings.Builder
	for i, v := range votes {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(shortDigest(v.Digest))
		b.WriteString(" → ")
		for j, n := range v.Nodes {
			if j > 0 {
				b.WriteString(", ")
			}
			if name != nil {
				n = name(n)
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// withClient parses the flags of a client command that takes no arguments,
// dials the node, and runs fn.
func withClient(ctx context.Context, name string, args []string, fn func(*sdk.Client, *clientFlags) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected arguments %q", fs.Args())
	}
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c, &cf)
}

func runJobList(ctx context.Context, args []string) error {
	return withClient(ctx, "gridnode job list", args, func(c *sdk.Client, cf *clientFlags) error {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			return nodeError(err)
		}
		sort.Slice(jobs, func(i, j int) bool { return jobs[i].Created.After(jobs[j].Created) })
		if cf.json {
			return printJSON(jobs)
		}
		for _, st := range jobs {
			fmt.Printf("%-28s %-10s %-12s %d/%d done, %d failed\n", st.JobID, st.State, st.Name, st.Committed+st.Failed, st.Items, st.Failed)
		}
		return nil
	})
}

func runInfo(ctx context.Context, args []string) error {
	return withClient(ctx, "gridnode info", args, func(c *sdk.Client, cf *clientFlags) error {
		in, err := c.Info(ctx)
		if err != nil {
			return nodeError(err)
		}
		if cf.json {
			return printJSON(in)
		}
		fmt.Printf("node %s incarnation %d epoch %d at %s\n  %d slots (%d running), isolation %s, version %s, up since %s\n",
			in.NodeID, in.Incarnation, in.Epoch, in.Addr, in.Slots, in.Running, in.Isolation, in.Version, in.Started.Local().Format(time.DateTime))
		m := in.MaxLimits
		fmt.Printf("  job limits at most: memory %d MiB, deadline %v, stdout %d KiB, log %d KiB\n",
			m.MemoryBytes>>20, m.Deadline, m.StdoutBytes>>10, m.StderrBytes>>10)
		return nil
	})
}

func runMembers(ctx context.Context, args []string) error {
	return withClient(ctx, "gridnode members", args, func(c *sdk.Client, cf *clientFlags) error {
		m, err := c.Members(ctx)
		if err != nil {
			return nodeError(err)
		}
		if cf.json {
			return printJSON(m)
		}
		quorum := "quorum"
		if !m.Quorum {
			quorum = "NO QUORUM: " + m.NoQuorum
		}
		fmt.Printf("epoch %d, leader %s, seen from %s: %s\n", m.Epoch, orDash(m.Leader), m.NodeID, quorum)
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSTATE\tINC\tADDR\tROLE\tSLOTS\tRUNNING\tHEARD\tTIMEOUT\tLABELS")
		for _, mb := range m.Members {
			state := mb.State
			if mb.Suspect && state == "alive" {
				state = "suspect"
			}
			role := ""
			switch {
			case mb.Leader && mb.Monitor:
				role = "leader"
			case mb.Monitor:
				role = "monitor"
			}
			if mb.Self {
				role = strings.TrimPrefix(role+",self", ",")
			}
			heard := "-"
			if mb.LastHeard >= 0 {
				heard = mb.LastHeard.Round(time.Millisecond).String() + " ago"
			}
			if mb.Self {
				heard = "-"
			}
			timeout := "-"
			if mb.Timeout > 0 {
				timeout = mb.Timeout.Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", mb.NodeID, state, mb.Incarnation, mb.Addr,
				orDash(role), mb.Slots, mb.Running, heard, timeout, orDash(labelString(mb.Labels)))
		}
		tw.Flush()
		if !m.Quorum {
			return fail(exitRefused, "the node holds no quorum")
		}
		return nil
	})
}

func runLeave(ctx context.Context, args []string) error {
	return withClient(ctx, "gridnode leave", args, func(c *sdk.Client, cf *clientFlags) error {
		r, err := c.Leave(ctx)
		if err != nil {
			return nodeError(err)
		}
		if cf.json {
			return printJSON(r)
		}
		fmt.Printf("left the cluster at epoch %d; the node is stopping\n", r.Epoch)
		return nil
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + l[k])
	}
	return b.String()
}

func runJobResults(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode job results", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	cursor := fs.Uint64("cursor", 0, "start after this result sequence number (printed as seq), to resume")
	follow := fs.Bool("follow", false, "keep printing results as they commit until the job is done")
	out := fs.String("out", "", "write each item's output to DIR/<index>.out instead of printing it")
	job, err := positionalArg(fs, args, needJob)
	if err != nil {
		return err
	}
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fail(exitLocal, "--out: %v", err)
		}
	}
	rs := c.Results(job, sdk.ResultsOptions{Cursor: *cursor, Follow: *follow})
	defer rs.Close()
	enc := json.NewEncoder(os.Stdout)
	failed := 0
	for r, err := range rs.All(ctx) {
		if err != nil {
			return nodeError(fmt.Errorf("%w (resume with --cursor %d)", err, rs.Cursor()))
		}
		if !r.OK() {
			failed++
		}
		if *out != "" {
			if err := os.WriteFile(filepath.Join(*out, fmt.Sprintf("%06d.out", r.Index)), r.Output, 0o644); err != nil {
				return fail(exitLocal, "write output: %v (resume with --cursor %d)", err, r.Seq-1)
			}
		}
		switch {
		case cf.json:
			if *out != "" {
				r.Output = nil
			}
			enc.Encode(r)
		case *out != "":
			if !r.OK() {
				fmt.Printf("seq %d item %d %s: %s\n", r.Seq, r.Index, r.Status, r.Message)
			}
		default:
			line := strings.TrimRight(string(r.Output), "\n")
			if !r.OK() {
				line = r.Message
			}
			fmt.Printf("seq %d item %d %s: %s\n", r.Seq, r.Index, r.Status, line)
		}
	}
	if failed > 0 {
		return fail(exitItemsFailed, "%d items failed (cursor %d)", failed, rs.Cursor())
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// keysByCount returns m's keys, largest count first, ties by key.
func keysByCount(m map[string]uint64) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}
