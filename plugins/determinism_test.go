package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var guest struct {
	once sync.Once
	wasm []byte
	err  error
}

// guestWasm builds ./testdata/testguest for wasip1 (cached in the OS temp dir by source hash).
func guestWasm(t testing.TB) []byte {
	t.Helper()
	guest.once.Do(func() {
		src, err := os.ReadFile(filepath.Join("testdata", "testguest", "main.go"))
		if err != nil {
			guest.err = err
			return
		}
		sum := sha256.Sum256(src)
		out := filepath.Join(os.TempDir(), "gridnode-plugins-testguest-"+hex.EncodeToString(sum[:8])+".wasm")
		if b, err := os.ReadFile(out); err == nil {
			guest.wasm = b
			return
		}
		gobin := filepath.Join(runtimeGOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-o", out+".tmp", "./testdata/testguest")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			guest.err = err
			t.Logf("go build testguest: %s", msg)
			return
		}
		if guest.err = os.Rename(out+".tmp", out); guest.err == nil {
			guest.wasm, guest.err = os.ReadFile(out)
		}
	})
	if guest.err != nil {
		t.Fatalf("build test guest: %v", guest.err)
	}
	return guest.wasm
}

func runtimeGOROOT() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// fields parses the guest's key=value lines.
func fields(out []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestDeterminism(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h, err := s.AddModule(context.Background(), guestWasm(t))
		if err != nil {
			t.Fatal(err)
		}
		run := func(item string, nondet bool) Outcome {
			o := execute(t, s, Task{Module: h, ItemID: item, Input: []byte("in"), Nondeterministic: nondet})
			if o.Status != StatusOK {
				t.Fatalf("status %s: %s\n%s", o.Status, o.Message, o.Stderr)
			}
			return o
		}
		a1, a2, b := run("item-a", false), run("item-a", false), run("item-b", false)
		if !bytes.Equal(a1.Stdout, a2.Stdout) || a1.Digest != a2.Digest {
			t.Fatalf("two runs of one item differ:\n%s\n---\n%s", a1.Stdout, a2.Stdout)
		}
		fa, fb := fields(a1.Stdout), fields(b.Stdout)
		if fa["crypto"] == fb["crypto"] || fa["mathrand"] == fb["mathrand"] {
			t.Fatalf("different items got the same randomness: %s / %s", fa["crypto"], fb["crypto"])
		}
		wall, _ := strconv.ParseInt(fa["wall"], 10, 64)
		if got := time.Unix(0, wall); got.Sub(virtualEpoch) < 0 || got.Sub(virtualEpoch) > time.Second {
			t.Fatalf("virtual wall clock reads %v, want just after %v", got, virtualEpoch)
		}
		if fa["slept"] != "true" {
			t.Fatalf("virtual sleep did not advance the monotonic clock: %q", fa["slept"])
		}
		if a1.Progress != 0.75 {
			t.Fatalf("progress %v, want the last value 0.75", a1.Progress)
		}
		if string(a1.Stderr) != "guest done\n" {
			t.Fatalf("stderr %q", a1.Stderr)
		}

		n1, n2 := run("item-a", true), run("item-a", true)
		fn := fields(n1.Stdout)
		nw, _ := strconv.ParseInt(fn["wall"], 10, 64)
		if d := time.Since(time.Unix(0, nw)); d < 0 || d > time.Minute {
			t.Fatalf("nondeterministic wall clock is %v away from now", d)
		}
		if fn["crypto"] == fields(n2.Stdout)["crypto"] {
			t.Fatal("nondeterministic runs share crypto randomness")
		}
	})
}

func TestABI(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h, err := s.AddModule(context.Background(), guestWasm(t))
		if err != nil {
			t.Fatal(err)
		}
		files := t.TempDir()
		if err := os.WriteFile(filepath.Join(files, "data.txt"), []byte("shared"), 0o644); err != nil {
			t.Fatal(err)
		}
		o := execute(t, s, Task{
			Module: h, ItemID: "abi", Name: "mytool", Input: []byte("stdin bytes"),
			Args: []string{"-n", "3"}, Env: map[string]string{"B": "2", "A": "1"}, FilesDir: files,
		})
		if o.Status != StatusOK {
			t.Fatalf("status %s: %s", o.Status, o.Message)
		}
		f := fields(o.Stdout)
		want := map[string]string{
			"input":    "stdin bytes",
			"args":     "mytool,-n,3",
			"env":      "A=1,B=2",
			"job":      "shared err=false",
			"jobwrite": "false",
			"tmp":      "true scratch",
			"tmpfiles": "0",
		}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("%s = %q, want %q", k, f[k], v)
			}
		}
		if _, err := os.Stat(filepath.Join(files, "new.txt")); err == nil {
			t.Error("the guest wrote into the read-only /job mount")
		}
		// What the guest wrote in scratch is gone after the execution.
		filepath.WalkDir(s.scratch, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("scratch left behind: %s", p)
			}
			return nil
		})
		// Without FilesDir there is no /job; default argv[0] is "job". The
		// next execution starts with an empty /tmp again.
		for i := range 3 {
			o = execute(t, s, Task{Module: h, ItemID: "abi2"})
			if f := fields(o.Stdout); f["job"] != " err=true" || f["args"] != "job" || f["tmpfiles"] != "0" || f["tmp"] != "true scratch" {
				t.Errorf("run %d without files: job=%q args=%q tmpfiles=%q tmp=%q", i, f["job"], f["args"], f["tmpfiles"], f["tmp"])
			}
		}
	})
}

// TestClockModule runs testdata/clock (a plain wasip1 Go program, no SDK).
func TestClockModule(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "clock/clock.wasm")
		files := t.TempDir()
		os.WriteFile(filepath.Join(files, "hello.txt"), []byte("hi there\n"), 0o644)
		task := Task{Module: h, ItemID: "clock-1", Args: []string{"a", "b"}, Env: map[string]string{"GREETING": "hello"}, FilesDir: files}
		a1, a2 := execute(t, s, task), execute(t, s, task)
		task.ItemID = "clock-2"
		b := execute(t, s, task)
		if a1.Status != StatusOK || !bytes.Equal(a1.Stdout, a2.Stdout) || a1.Digest != a2.Digest {
			t.Fatalf("same item, different bytes:\n%s---\n%s", a1.Stdout, a2.Stdout)
		}
		fa, fb := fields(a1.Stdout), fields(b.Stdout)
		if fa["rand"] == fb["rand"] || fa["crypto"] == fb["crypto"] || a1.Digest == b.Digest {
			t.Fatalf("different items, same randomness:\n%s---\n%s", a1.Stdout, b.Stdout)
		}
		if fa["args"] != "a b" || fa["env"] != "hello" || fa["file"] != "hi there" {
			t.Fatalf("args/env/file: %q %q %q", fa["args"], fa["env"], fa["file"])
		}
		mono, _ := strconv.ParseInt(fa["mono"], 10, 64)
		if mono < int64(10*time.Millisecond) || mono > int64(11*time.Millisecond) {
			t.Fatalf("virtual sleep of 10ms measured %dns", mono)
		}
		task.Nondeterministic = true
		n := execute(t, s, task)
		wall, _ := strconv.ParseInt(fields(n.Stdout)["wall"], 10, 64)
		if d := time.Since(time.Unix(0, wall)); d < 0 || d > time.Minute {
			t.Fatalf("nondeterministic wall clock is %v from now", d)
		}
	})
}
