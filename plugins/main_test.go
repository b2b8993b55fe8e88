package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sharedCache is one wazero compilation cache for all sandboxes of this test
// run (linked as <Dir>/cache), so each Go test module compiles once, not once
// per test. TestRestartReusesStoreAndCache uses a cache of its own.
var sharedCache string

func TestMain(m *testing.M) {
	MaybeServeWorker() // the test binary is its own worker
	var err error
	if sharedCache, err = os.MkdirTemp("", "gridnode-plugins-cache-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(sharedCache)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// both runs f once per isolation: one behaviour suite for every implementation.
func both(t *testing.T, f func(t *testing.T, iso Isolation)) {
	for _, iso := range []Isolation{InProcess, Process} {
		t.Run(string(iso), func(t *testing.T) { f(t, iso) })
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func openSandbox(t testing.TB, iso Isolation, dir string) *Sandbox {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
		if err := os.Symlink(sharedCache, filepath.Join(dir, "cache")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(context.Background(), Config{Dir: dir, Isolation: iso, Workers: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func readTestdata(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", rel))
	if err != nil {
		t.Skipf("test module not built yet: %v", err)
	}
	return b
}

func addTestdata(t testing.TB, s *Sandbox, rel string) Hash {
	t.Helper()
	h, err := s.AddModule(context.Background(), readTestdata(t, rel))
	if err != nil {
		t.Fatalf("AddModule(%s): %v", rel, err)
	}
	return h
}

func execute(t testing.TB, s *Sandbox, task Task) Outcome {
	t.Helper()
	o := s.Execute(context.Background(), task)
	t.Logf("%s: status=%s exit=%d msg=%q dur=%v stdout=%d bytes", task.ItemID, o.Status, o.ExitCode, o.Message, o.Duration.Round(time.Millisecond), len(o.Stdout))
	return o
}

// checkEcho asserts the sandbox still runs echo correctly.
func checkEcho(t *testing.T, s *Sandbox, echo Hash) {
	t.Helper()
	o := s.Execute(context.Background(), Task{Module: echo, ItemID: "echo-check", Input: []byte("still alive")})
	if o.Status != StatusOK || string(o.Stdout) != "still alive" {
		t.Fatalf("echo after a hostile module: status %s, stdout %q, message %q", o.Status, o.Stdout, o.Message)
	}
}
