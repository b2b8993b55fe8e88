package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
)

// runSummary is what `job run` reports at the end (and prints with --json).
type runSummary struct {
	JobID     string            `json:"job_id"`
	Module    string            `json:"module"`
	Items     uint64            `json:"items"`
	OK        uint64            `json:"ok"`
	Failed    uint64            `json:"failed"`
	ByStatus  map[string]uint64 `json:"by_status"`
	State     string            `json:"state"`
	OutDir    string            `json:"out_dir,omitempty"`
	Seconds   float64           `json:"seconds"`
	PerSecond float64           `json:"items_per_second"`
	Failures  []failure         `json:"failures,omitempty"` // the first few
	Votes     voteSummary       `json:"votes"`
}

// voteSummary is how a job's items were decided.
type voteSummary struct {
	Replicas int `json:"replicas"`
	Quorum   int `json:"quorum"`
	// FirstTry counts the items whose first Replicas executions agreed;
	// Alone those an adaptive job accepted from one trusted execution;
	// MoreExecs those that needed more executions (a disagreement, a lost
	// execution).
	FirstTry  uint64 `json:"agreed_first_try"`
	Alone     uint64 `json:"accepted_alone,omitempty"`
	MoreExecs uint64 `json:"needed_more_executions"`
	// NoConsensus counts the items whose executions never agreed;
	// Undecided those that ran out of attempts or lost too many executions.
	NoConsensus uint64 `json:"no_consensus"`
	Undecided   uint64 `json:"undecided"`
	// PerNode counts, per node, the executions in the committed votes.
	PerNode map[string]uint64 `json:"executions_per_node"`
}

// voteTally starts a voteSummary for a job's policy (zero: the defaults).
func voteTally(replicas, quorum int) voteSummary {
	replicas = max(replicas, 1)
	if quorum <= 0 {
		quorum = replicas
	}
	return voteSummary{Replicas: replicas, Quorum: quorum, PerNode: map[string]uint64{}}
}

func (v *voteSummary) add(r api.Result) {
	switch r.Status {
	case api.StatusNoConsensus:
		v.NoConsensus++
		return
	case api.StatusTooManyErrors, api.StatusAttempts:
		v.Undecided++
		return
	}
	switch {
	case len(r.Votes) > 1 || r.Attempts > v.Replicas:
		v.MoreExecs++
	case r.Attempts > 0 && r.Attempts < v.Replicas:
		v.Alone++
	default:
		v.FirstTry++
	}
	if len(r.Votes) > 0 {
		for _, n := range r.Votes[0].Nodes {
			v.PerNode[n]++
		}
	} else if r.Node != "" {
		v.PerNode[r.Node]++
	}
}

type failure struct {
	Index   uint64 `json:"index"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func runJobRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gridnode job run", flag.ContinueOnError)
	var f jobFlags
	f.register(fs)
	out := fs.String("out", "", "directory for each item's output (default: ./<job ID>.out)")
	quiet := fs.Bool("quiet", false, "no progress display")
	module, err := positionalArg(fs, args, needModule)
	if err != nil {
		return err
	}
	c, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	reply, names, err := submit(ctx, c, &f, module)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = reply.JobID + ".out"
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(exitLocal, "--out: %v (the job %s runs on; read its results later with `gridnode job results %s --out DIR`)", err, reply.JobID, reply.JobID)
	}
	var prog progress
	if !*quiet && !f.json {
		prog = newProgress(os.Stderr, reply.JobID, reply.Items)
	}
	sum, err := collectEach(ctx, c, reply, *out, names, prog, voteTally(f.replicas, f.quorum), nil)
	if prog != nil {
		prog.done()
	}
	if err != nil {
		return err
	}
	sum.Module, sum.Seconds = module, time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.PerSecond = float64(sum.OK+sum.Failed) / sum.Seconds
	}
	if f.json {
		printJSON(sum)
	} else {
		printSummary(os.Stdout, sum)
	}
	switch {
	case sum.State == api.JobCancelled:
		return &exitError{code: exitIncomplete, err: errQuiet}
	case sum.Failed > 0:
		return &exitError{code: exitItemsFailed, err: errQuiet}
	}
	return nil
}

// collect follows a job's results to the end, writing outputs into dir.
func collect(ctx context.Context, c *sdk.Client, reply api.SubmitReply, dir string, names func(uint64) string, prog progress) (runSummary, error) {
	return collectEach(ctx, c, reply, dir, names, prog, voteTally(0, 0), nil)
}

// collectEach is collect with the job's vote policy in votes, and each
// (if not nil) called with every result.
func collectEach(ctx context.Context, c *sdk.Client, reply api.SubmitReply, dir string, names func(uint64) string, prog progress,
	votes voteSummary, each func(api.Result)) (runSummary, error) {
	sum := runSummary{JobID: reply.JobID, Items: reply.Items, ByStatus: map[string]uint64{}, OutDir: dir, Votes: votes}
	rs := c.Results(reply.JobID, sdk.ResultsOptions{Follow: true})
	defer rs.Close()
	var errLog *os.File
	for r, err := range rs.All(ctx) {
		if err != nil {
			return sum, nodeError(fmt.Errorf("reading results: %w (the job goes on: resume with `gridnode job results %s --cursor %d --follow --out %s`)", err, reply.JobID, rs.Cursor(), dir))
		}
		sum.ByStatus[r.Status]++
		sum.Votes.add(r)
		if each != nil {
			each(r)
		}
		if err := os.WriteFile(filepath.Join(dir, names(r.Index)), r.Output, 0o644); err != nil {
			return sum, fail(exitLocal, "write output: %v", err)
		}
		if r.OK() {
			sum.OK++
		} else {
			sum.Failed++
			if len(sum.Failures) < 5 {
				sum.Failures = append(sum.Failures, failure{Index: r.Index, Status: r.Status, Message: r.Message})
			}
			if errLog == nil {
				var err error
				if errLog, err = os.Create(filepath.Join(dir, "failures.log")); err != nil {
					return sum, fail(exitLocal, "write failures.log: %v", err)
				}
				defer errLog.Close()
			}
			fmt.Fprintf(errLog, "item %d (%s) %s: %s\n", r.Index, r.ItemID, r.Status, r.Message)
			if len(r.Log) > 0 {
				fmt.Fprintf(errLog, "  log: %s\n", strings.ReplaceAll(strings.TrimSpace(string(r.Log)), "\n", "\n       "))
			}
		}
		if prog != nil {
			prog.update(sum.OK, sum.Failed)
		}
	}
	sum.State = api.JobDone
	if st := rs.Status(); st != nil {
		sum.State = st.State
	}
	return sum, nil
}

func printSummary(w io.Writer, s runSummary) {
	fmt.Fprintf(w, "job %s %s: %d items, %d ok, %d failed in %.2fs (%.0f items/s)\n", s.JobID, s.State, s.Items, s.OK, s.Failed, s.Seconds, s.PerSecond)
	if len(s.ByStatus) > 1 || s.Failed > 0 {
		keys := make([]string, 0, len(s.ByStatus))
		for k := range s.ByStatus {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-18s %d\n", k, s.ByStatus[k])
		}
	}
	printVotes(w, s.Votes)
	for _, f := range s.Failures {
		fmt.Fprintf(w, "  item %d %s: %s\n", f.Index, f.Status, f.Message)
	}
	if s.Failed > uint64(len(s.Failures)) {
		fmt.Fprintf(w, "  … every failure is in %s\n", filepath.Join(s.OutDir, "failures.log"))
	}
	fmt.Fprintf(w, "outputs in %s\n", s.OutDir)
}

// printVotes writes how the items were decided, in two lines.
func printVotes(w io.Writer, v voteSummary) {
	if v.Replicas == 0 {
		return
	}
	fmt.Fprintf(w, "  votes (replicas %d, quorum %d): %d agreed at the first try, %d needed more executions, %d no consensus",
		v.Replicas, v.Quorum, v.FirstTry, v.MoreExecs, v.NoConsensus)
	if v.Alone > 0 {
		fmt.Fprintf(w, ", %d accepted from one trusted execution", v.Alone)
	}
	if v.Undecided > 0 {
		fmt.Fprintf(w, ", %d undecided", v.Undecided)
	}
	fmt.Fprintln(w)
	if len(v.PerNode) == 0 {
		return
	}
	ids := keysByCount(v.PerNode)
	fmt.Fprint(w, "  executions per node: ")
	const show = 8
	for i, id := range ids[:min(len(ids), show)] {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %d", id, v.PerNode[id])
	}
	if len(ids) > show {
		fmt.Fprintf(w, " and %d more nodes", len(ids)-show)
	}
	fmt.Fprintln(w)
}

// progress shows how far a job is: a redrawn line on a terminal, plain
// lines (at most every 2 s) otherwise.
type progress interface {
	update(ok, failed uint64)
	done()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(w *os.File, job string, total uint64) progress {
	p := &lineProgress{w: w, job: job, total: total, start: time.Now(), tty: isTerminal(w)}
	return p
}

type lineProgress struct {
	w           io.Writer
	job         string
	total       uint64
	start, last time.Time
	tty         bool
	ok, failed  uint64
}

func (p *lineProgress) update(ok, failed uint64) {
	p.ok, p.failed = ok, failed
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && ok+failed < p.total {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *lineProgress) draw() {
	n := p.ok + p.failed
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(n) / float64(p.total)
	}
	line := fmt.Sprintf("%s: %d/%d items (%.0f%%), %d failed, %s", p.job, n, p.total, pct, p.failed, time.Since(p.start).Round(100*time.Millisecond))
	if p.tty {
		const width = 24
		fill := int(pct / 100 * width)
		fmt.Fprintf(p.w, "\r[%s%s] %s\x1b[K", strings.Repeat("#", fill), strings.Repeat(".", width-fill), line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *lineProgress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// printCounts writes outcome counts as "ok 998, trap 2", sorted by outcome.
func printCounts(w io.Writer, counts map[string]uint64) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %d", k, counts[k])
	}
}
