package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
)

// gridnodeBin is the binary built once for the tests that run real processes.
var gridnodeBin string

func TestMain(m *testing.M) {
	plugins.MaybeServeWorker()
	dir, err := os.MkdirTemp("", "gridnode-bin-")
	if err != nil {
		panic(err)
	}
	gridnodeBin = filepath.Join(dir, "gridnode")
	if out, err := exec.Command("go", "build", "-o", gridnodeBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gridnode: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestDemoChecksEveryResult(t *testing.T) {
	stdout, stderr, code := gridnode(t, nil, "demo", "--items", "60", "--width", "1000")
	if code != exitOK {
		t.Fatalf("demo exit code %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"3 nodes alive, 3 monitors",
		"60 items, 60 ok, 0 failed, 0 checked wrong",
		"votes: 60 items committed",
		"distinct hosts per item: 2 for 60 items",
		"every result verified: OK",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	// It killed the job's home mid-run, the others declared it dead in a
	// new epoch, another holder took the job over, the client went on
	// through another node, and the job finished correct all the same
	// (checked above).
	for _, re := range []string{
		`killed demo-1 without warning with \d+ of 60 items committed; declared dead \d+(\.\d+)?m?s later: epoch (\d+) → (\d+)`,
		`the job's new home: demo-[23] took it over from the copies of its holders; this client went on through demo-[23]`,
		`after the kill: \d+ items moved to a new coordinator, \d+ executions lost and run again elsewhere`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("demo output lacks a line matching %s:\n%s", re, stdout)
		}
	}
	// Every node of the three ran some of the executions.
	m := regexp.MustCompile(`executions per node \(in the committed votes\): demo-1 (\d+), demo-2 (\d+), demo-3 (\d+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("demo output lacks the executions of all three nodes:\n%s", stdout)
	}
	total := 0
	for _, s := range m[1:] {
		n, _ := strconv.Atoi(s)
		total += n
	}
	if total != 120 {
		t.Errorf("the committed votes hold %d executions, want 60 items × 2", total)
	}
}

func TestDemoRefusesMoreReplicasThanNodes(t *testing.T) {
	_, stderr, code := gridnode(t, nil, "demo", "--nodes", "2", "--replicas", "3")
	if code != exitUsage || !strings.Contains(stderr, "--replicas 3") {
		t.Fatalf("exit %d, stderr %q; want %d naming --replicas", code, stderr, exitUsage)
	}
}

func TestBenchPrintsItsRows(t *testing.T) {
	stdout, stderr, code := gridnode(t, nil, "bench", "--rounds", "1", "--execs", "10", "--items", "20", "--samples", "10")
	if code != exitOK {
		t.Fatalf("bench exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, re := range []string{
		`echo \(tiny, WAT\) +inprocess .* µs/exec`,
		`primes \(Go, guest SDK\) +process .* µs/exec`,
		`cluster throughput: 3 nodes`,
		`work \(1 ms\) +sandbox alone, 12 workers fed directly: +\d+ items/s +raw +\d+ items/s +efficiency \d+\.\d\d`,
		`echo \(tiny\) +sandbox alone, .* efficiency \d+\.\d\d`,
		`work \(1 ms\) +replicas 1 +cluster +\d+ items/s +raw +\d+ items/s .* efficiency \d+\.\d\d \(target 0\.75\)`,
		`work \(1 ms\) +replicas 2 .* efficiency \d+\.\d\d`,
		`echo \(tiny\) +replicas 1 .* efficiency \d+\.\d\d \(target 0\.40\)`,
		`echo \(tiny\) +replicas 2 .* efficiency \d+\.\d\d`,
		`replicas 1 +p50 +\d+\.\d\d ms +p99 +\d+\.\d\d ms`,
		`replicas 2 +p50 +\d+\.\d\d ms +p99 +\d+\.\d\d ms`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("bench output lacks a line matching %s:\n%s", re, stdout)
		}
	}
}

// gridnode runs the binary with env and returns stdout, stderr and the exit code.
func gridnode(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gridnodeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// devNode is a `gridnode dev` process.
type devNode struct {
	cmd     *exec.Cmd
	env     []string
	metrics string
}

func startDev(t *testing.T) *devNode {
	t.Helper()
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile.json")
	cmd := exec.Command(gridnodeBin, "dev", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--metrics", "127.0.0.1:0", "--profile", profile, "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devNode{cmd: cmd, env: []string{"GRIDNODE_PROFILE=" + profile}}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if _, after, ok := strings.Cut(line, "metrics:"); ok {
			d.metrics = strings.TrimSpace(after)
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			go io.Copy(io.Discard, stdout)
			return d
		}
	}
	t.Fatal("gridnode dev ended before it was ready")
	return nil
}

func TestDevNodeRunsAJobFromTheCLI(t *testing.T) {
	d := startDev(t)
	out := t.TempDir()
	ranges := filepath.Join(t.TempDir(), "ranges.txt")
	var b strings.Builder
	const items = 200
	for i := range items {
		fmt.Fprintf(&b, "%d %d\n", i*1000, (i+1)*1000)
	}
	os.WriteFile(ranges, []byte(b.String()), 0o644)

	stdout, stderr, code := gridnode(t, d.env, "job", "run", "../../testdata/primes/primes.wasm", "--lines", ranges, "--out", out, "--json")
	if code != exitOK {
		t.Fatalf("job run exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum runSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, stdout)
	}
	if sum.Items != items || sum.OK != items || sum.Failed != 0 || sum.State != "done" {
		t.Fatalf("summary %+v", sum)
	}
	sieve := primeSieve(items * 1000)
	total := 0
	for i := range items {
		got, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%06d.out", i)))
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for n := i * 1000; n < (i+1)*1000; n++ {
			if sieve[n] {
				want++
			}
		}
		n, ok := parsePrimesLine(string(got), i*1000, (i+1)*1000)
		if !ok || n != want {
			t.Fatalf("item %d: %q, want count %d", i, got, want)
		}
		total += n
	}
	if total != 17984 { // π(200,000)
		t.Fatalf("π(200000) = %d, want 17984", total)
	}

	// Status and results of the same job, as a script would read them.
	stdout, _, code = gridnode(t, d.env, "job", "status", sum.JobID, "--json")
	if code != exitOK || !strings.Contains(stdout, `"State": "done"`) {
		t.Fatalf("job status: exit %d\n%s", code, stdout)
	}
	stdout, _, code = gridnode(t, d.env, "job", "results", sum.JobID, "--cursor", fmt.Sprint(items-3))
	if code != exitOK || strings.Count(stdout, "\n") != 3 {
		t.Fatalf("job results --cursor: exit %d\n%s", code, stdout)
	}

	// The node's metrics count the executions.
	resp, err := http.Get(d.metrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `gridnode_executions_total{`) {
		t.Fatalf("/metrics lacks gridnode_executions_total:\n%.2000s", body)
	}

	// A hostile job: every item fails with its reason, exit code 1, the node stays up.
	stdout, _, code = gridnode(t, d.env, "job", "run", "../../testdata/hostile/trap.wasm", "--range", "0:3", "--out", t.TempDir())
	if code != exitItemsFailed || !strings.Contains(stdout, "trap") {
		t.Fatalf("trap job: exit %d\n%s", code, stdout)
	}
	// The node still serves.
	if _, _, code := gridnode(t, d.env, "info"); code != exitOK {
		t.Fatalf("info after a hostile job: exit %d", code)
	}

	// SIGTERM stops the node cleanly.
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("dev after SIGTERM: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	d := startDev(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, "unknown command"},
		{"bad flag", d.env, []string{"job", "run", "x.wasm", "--bogus"}, exitUsage, "bogus"},
		{"two input kinds", d.env, []string{"job", "run", "x.wasm", "--range", "0:2", "--dir", dir}, exitUsage, "exactly one"},
		{"bad range", d.env, []string{"job", "submit", "sha256:00", "--range", "5:1"}, exitUsage, "LO < HI"},
		{"no profile", []string{"GRIDNODE_PROFILE=" + filepath.Join(dir, "none.json")}, []string{"job", "list"}, exitUnreachable, "gridnode dev"},
		{"missing file", d.env, []string{"module", "push", filepath.Join(dir, "nope.wasm")}, exitLocal, "nope.wasm"},
		{"component", d.env, []string{"module", "push", "../../testdata/hostile/component.wasm"}, exitRefused, "wasm32-wasip1"},
		{"unknown import", d.env, []string{"module", "push", "../../testdata/hostile/badimport.wasm"}, exitRefused, "nonexistent"},
		{"unknown job", d.env, []string{"job", "status", "nope-1-1"}, exitRefused, "not_found"},
		{"over the limit", d.env, []string{"job", "run", "../../testdata/echo/echo.wasm", "--range", "0:1", "--memory", "1000GiB"}, exitRefused, "memory"},
	}
	for _, tc := range cases {
		_, stderr, code := gridnode(t, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", tc.name, code, stderr, tc.code, tc.msg)
		}
	}
	// Unreachable: a profile whose node is gone.
	d.cmd.Process.Kill()
	d.cmd.Wait()
	if _, stderr, code := gridnode(t, d.env, "job", "list"); code != exitUnreachable {
		t.Errorf("node gone: exit %d, stderr %q; want %d", code, stderr, exitUnreachable)
	}
}

func TestRunLocal(t *testing.T) {
	stdout, stderr, code := gridnode(t, nil, "run-local", "../../testdata/primes/primes.wasm", "--in", "0 100")
	if code != exitOK || stdout != "0 100 25\n" || !strings.Contains(stderr, "ok") {
		t.Fatalf("run-local primes: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	_, stderr, code = gridnode(t, nil, "run-local", "../../testdata/exit3/exit3.wasm", "--in", "")
	if code != exitItemsFailed || !strings.Contains(stderr, "bye") || !strings.Contains(stderr, "exit 3") {
		t.Fatalf("run-local exit3: exit %d stderr %q", code, stderr)
	}
}

func TestCLIPolicyFlags(t *testing.T) {
	d := startDev(t)
	echo := "../../testdata/echo/echo.wasm"
	// Combinations the node refuses: the CLI shows its reason and exits
	// with the code of a refusal.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"job", "run", echo, "--range", "0:1", "--replicas", "2", "--quorum", "3", "--out", t.TempDir()}, "quorum 3 is more than replicas 2"},
		{[]string{"job", "submit", echo, "--range", "0:1", "--adaptive"}, "adaptive replication needs replicas of 2 or more"},
		{[]string{"job", "submit", echo, "--range", "0:1", "--replicas", "2", "--attempts", "1"}, "attempts 1 is less than replicas 2"},
		{[]string{"job", "submit", echo, "--range", "0:1", "--replicas", "17"}, "replicas 17 is out of range"},
	} {
		_, stderr, code := gridnode(t, d.env, tc.args...)
		if code != exitRefused || !strings.Contains(stderr, "bad_request") || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d with bad_request: %q", tc.args, code, stderr, exitRefused, tc.msg)
		}
	}
	// Negative numbers are the command line's mistake.
	if _, stderr, code := gridnode(t, d.env, "job", "submit", echo, "--range", "0:1", "--max-errors", "-1"); code != exitUsage || !strings.Contains(stderr, "negative") {
		t.Errorf("--max-errors -1: exit %d, stderr %q; want %d", code, stderr, exitUsage)
	}

	// Every policy flag reaches the node: a job it accepts runs.
	stdout, stderr, code := gridnode(t, d.env, "job", "run", echo, "--range", "0:5", "--out", t.TempDir(),
		"--replicas", "1", "--quorum", "1", "--attempts", "4", "--max-errors", "2", "--item-deadline", "1m")
	if code != exitOK || !strings.Contains(stdout, "votes (replicas 1, quorum 1): 5 agreed at the first try, 0 needed more executions, 0 no consensus") ||
		!regexp.MustCompile(`executions per node: n[0-9a-f]+ 5\n`).MatchString(stdout) {
		t.Fatalf("job run: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Two replicas on a one-node cluster: no second host can take the
	// items, and the status says so, item by item.
	stdout, stderr, code = gridnode(t, d.env, "job", "submit", echo, "--range", "0:3", "--replicas", "2")
	if code != exitOK {
		t.Fatalf("job submit: exit %d\n%s", code, stderr)
	}
	job := strings.TrimSpace(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for {
		stdout, _, code = gridnode(t, d.env, "job", "status", job, "--json")
		var st struct{ Waiting map[string]uint64 }
		if err := json.Unmarshal([]byte(stdout), &st); code != exitOK || err != nil {
			t.Fatalf("job status --json: exit %d, %v\n%s", code, err, stdout)
		}
		if st.Waiting["no node can take it"] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the items never waited for a second host: %s", stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stdout, _, code = gridnode(t, d.env, "job", "status", job)
	if code != exitOK || !strings.Contains(stdout, "not done: 3 no node can take it") ||
		!regexp.MustCompile(`item 0: no node can take it, 1 execution, coordinator n[0-9a-f]+; votes [0-9a-f]{12} → n[0-9a-f]+\n`).MatchString(stdout) {
		t.Fatalf("job status: exit %d\n%s", code, stdout)
	}
	if _, _, code := gridnode(t, d.env, "job", "cancel", job); code != exitOK {
		t.Fatalf("job cancel: exit %d", code)
	}
}

func TestCLIStatusShowsWhyItemsWait(t *testing.T) {
	until := time.Date(2026, 11, 22, 10, 0, 0, 0, time.Local)
	st := api.JobStatus{
		JobID: "n1-2-3", Name: "primes", State: api.JobRunning, Items: 10, Pending: 4, Running: 2, Committed: 4,
		Waiting: map[string]uint64{api.WaitRunning: 2, api.WaitDisagree: 1, api.WaitSlot: 3},
		Unfinished: []api.ItemState{{Index: 7, Why: api.WaitDisagree, Coordinator: "n2", Executions: 3, Votes: []api.Vote{
			{Digest: "sha256:0123456789abcdef0123", Nodes: []string{"n1", "n3"}},
			{Digest: "sha256:fedcba9876543210fedc", Nodes: []string{"n2"}},
		}}, {Index: 8, Why: api.WaitRunning, Coordinator: "n1", Executions: 2, Executors: []string{"n3"}, Resumed: 1}},
		Quarantined: []api.Quarantine{{Node: "n2", Module: "sha256:aaaabbbbccccdddd", Until: until}},
	}
	var b strings.Builder
	printStatus(&b, st)
	for _, want := range []string{
		"  not done: 3 waiting for a slot, 2 running, 1 executions disagree\n",
		"  item 7: executions disagree, 3 executions, coordinator n2; votes 0123456789ab → n1, n3; fedcba987654 → n2\n",
		"  item 8: running, 2 executions, coordinator n1, on n3 (1 resumed from a checkpoint)\n",
		"  quarantined: node n2 gets no items of module aaaabbbbcccc until 2026-11-22 10:00:00",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCLISummaryCountsVotes(t *testing.T) {
	v := voteTally(2, 0)
	one := func(d string, nodes ...string) api.Vote { return api.Vote{Digest: d, Nodes: nodes} }
	for _, r := range []api.Result{
		{Status: "ok", Attempts: 2, Votes: []api.Vote{one("a", "n1", "n2")}},
		{Status: "ok", Attempts: 2, Votes: []api.Vote{one("b", "n2", "n3")}},
		{Status: "trap", Attempts: 2, Votes: []api.Vote{one("c", "n1", "n3")}}, // a deterministic trap is agreed on too
		{Status: "ok", Attempts: 3, Votes: []api.Vote{one("d", "n1", "n3"), one("e", "n2")}},
		{Status: "ok", Attempts: 3, Votes: []api.Vote{one("f", "n1", "n2")}}, // one execution was lost
		{Status: "ok", Attempts: 1, Votes: []api.Vote{one("g", "n3")}},       // adaptive: trusted alone
		{Status: api.StatusNoConsensus, Attempts: 4, Votes: []api.Vote{one("h", "n1"), one("i", "n2")}},
		{Status: api.StatusTooManyErrors, Attempts: 4},
	} {
		v.add(r)
	}
	want := voteSummary{Replicas: 2, Quorum: 2, FirstTry: 3, Alone: 1, MoreExecs: 2, NoConsensus: 1, Undecided: 1,
		PerNode: map[string]uint64{"n1": 4, "n2": 3, "n3": 4}}
	if fmt.Sprint(v) != fmt.Sprint(want) {
		t.Fatalf("tally\n got %+v\nwant %+v", v, want)
	}
	var b strings.Builder
	printSummary(&b, runSummary{JobID: "j", State: api.JobDone, Items: 8, OK: 5, Failed: 3, OutDir: "out",
		ByStatus: map[string]uint64{"ok": 5, "trap": 1, api.StatusNoConsensus: 1, api.StatusTooManyErrors: 1}, Votes: v})
	for _, line := range []string{
		"  votes (replicas 2, quorum 2): 3 agreed at the first try, 2 needed more executions, 1 no consensus, 1 accepted from one trusted execution, 1 undecided\n",
		"  executions per node: n1 4, n3 4, n2 3\n",
		"  no_consensus       1\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("summary lacks %q:\n%s", line, b.String())
		}
	}
}
