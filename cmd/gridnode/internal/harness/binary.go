package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// FaultsTag is the build tag that compiles fault injection into the binary
// (plugins' GRIDNODE_FAULT_* variables). Never ship such a binary.
const FaultsTag = "gridnode_faults"

// builds caches one binary per set of build tags for the life of the test
// process.
var builds struct {
	mu  sync.Mutex
	by  map[string]*built // by sorted, comma-joined tags
	dir string            // this process's temp dir for binaries
}

type built struct {
	once sync.Once
	path string
	err  error
}

// Binary builds ./cmd/gridnode once per test process and returns its path.
// The module root is found by walking up from the working directory (the
// test's package dir) to go.mod. The binary lives in a temp dir named after
// this process; dirs of processes that no longer exist are removed on the
// next build.
func Binary(t testing.TB) string {
	t.Helper()
	return BinaryWithTags(t)
}

// BinaryWithTags is Binary built with -tags: once per test process and set
// of tags (their order does not matter). BinaryWithTags(t, FaultsTag) is
// the binary whose agents obey GRIDNODE_FAULT_WRONG_OUTPUT.
func BinaryWithTags(t testing.TB, tags ...string) string {
	t.Helper()
	tags = slices.Clone(tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	key := strings.Join(tags, ",")
	builds.mu.Lock()
	if builds.by == nil {
		builds.by = map[string]*built{}
	}
	b := builds.by[key]
	if b == nil {
		b = &built{}
		builds.by[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		b.path, b.err = buildBinary(key)
	})
	if b.err != nil {
		t.Fatalf("harness: %v", b.err)
	}
	return b.path
}

const binDirPrefix = "gridnode-harness-"

// buildBinary builds ./cmd/gridnode with tags (comma-separated, "" for
// none) into this process's binary dir.
func buildBinary(tags string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return "", err
	}
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	name := "gridnode"
	args := []string{"build", "-o"}
	if tags != "" {
		name += "-" + strings.ReplaceAll(tags, ",", "-")
	}
	bin := filepath.Join(dir, name)
	args = append(args, bin)
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./cmd/gridnode")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), root, err, out)
	}
	return bin, nil
}

// binDir is this process's temp dir for binaries, made on first use after
// removing the dirs of processes that are gone.
func binDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		return builds.dir, nil
	}
	removeStaleBinaries()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	builds.dir = dir
	return dir, nil
}

// moduleRoot walks up from dir to the directory holding go.mod.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = parent
	}
}

// removeStaleBinaries deletes binaries built by test processes that are gone.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*-*"))
	for _, d := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), binDirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}
