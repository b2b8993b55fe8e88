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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridnode/gridnode/plugins"
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
	if code := run([]string{"demo", "--items", "60", "--width", "1000"}); code != exitOK {
		t.Fatalf("demo exit code %d", code)
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
