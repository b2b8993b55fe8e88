package plugins

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRestartReusesStoreAndCache(t *testing.T) {
	dir := t.TempDir()
	wasm := guestWasm(t)
	ctx := context.Background()

	s1, err := Open(ctx, Config{Dir: dir, Isolation: InProcess})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	h, err := s1.AddModule(ctx, wasm)
	cold := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if h2, err := s1.AddModule(ctx, wasm); err != nil || h2 != h {
		t.Fatalf("second AddModule: %v %v", h2, err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	cache, _ := os.ReadDir(filepath.Join(dir, "cache"))
	if len(cache) == 0 {
		t.Fatal("compilation cache dir is empty after compiling")
	}

	// A new Sandbox on the same Dir (a node restart): the module is there,
	// and compiling it again is a hit in the on-disk cache.
	s2 := openSandbox(t, Process, dir)
	if !s2.HasModule(h) {
		t.Fatal("module lost across restart")
	}
	b, err := s2.ModuleBytes(h)
	if err != nil || !bytes.Equal(b, wasm) {
		t.Fatalf("ModuleBytes after restart: %v", err)
	}
	t0 = time.Now()
	if _, err := s2.AddModule(ctx, wasm); err != nil {
		t.Fatal(err)
	}
	warm := time.Since(t0)
	t.Logf("compile of a %d KiB Go module: cold %v, after restart %v (%.0fx)", len(wasm)>>10, cold, warm, float64(cold)/float64(warm))
	o := execute(t, s2, Task{Module: h, ItemID: "r"})
	if o.Status != StatusOK {
		t.Fatalf("after restart: %s %s", o.Status, o.Message)
	}
	// Modules live under their hash; nothing else is left in modules/.
	entries, _ := os.ReadDir(filepath.Join(dir, "modules"))
	if len(entries) != 1 || entries[0].Name() != h.hex()+".wasm" {
		t.Fatalf("modules dir: %v", entries)
	}
}

func TestCorruptStoredModule(t *testing.T) {
	s := openSandbox(t, InProcess, "")
	h := addTestdata(t, s, "echo/echo.wasm")
	if err := os.WriteFile(s.store.path(h), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ModuleBytes(h); !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("got %v", err)
	}
}

func TestHash(t *testing.T) {
	h := HashOf([]byte("abc"))
	if h != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashOf = %s", h)
	}
	if p, err := ParseHash(strings.ToUpper(string(h[7:]))); err == nil {
		t.Fatalf("accepted a hash without prefix: %s", p)
	}
	if p, err := ParseHash("sha256:" + strings.ToUpper(string(h[7:]))); err != nil || p != h {
		t.Fatalf("ParseHash upper: %s %v", p, err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:zz" + string(h[9:]), string(h) + "00", "md5:" + string(h[7:])} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func TestLimits(t *testing.T) {
	s := openSandbox(t, InProcess, "")
	l, err := s.Limits(Limits{})
	if err != nil || l != DefaultLimits() {
		t.Fatalf("defaults: %+v %v", l, err)
	}
	l, err = s.Limits(Limits{MemoryBytes: 100000, Deadline: time.Second})
	if err != nil || l.MemoryBytes != pageSize || l.Deadline != time.Second || l.StdoutBytes != DefaultStdoutBytes {
		t.Fatalf("partial: %+v %v", l, err)
	}
	for _, c := range []struct {
		req  Limits
		want []string
	}{
		{Limits{MemoryBytes: 8 << 30}, []string{"memory", "8 GiB", "4 GiB"}},
		{Limits{Deadline: 25 * time.Hour}, []string{"deadline", "25h0m0s", "24h0m0s"}},
		{Limits{StdoutBytes: 65 << 20}, []string{"stdout", "65 MiB", "64 MiB"}},
		{Limits{StderrBytes: 2 << 20}, []string{"stderr", "2 MiB", "1 MiB"}},
		{Limits{Deadline: -1}, []string{"negative"}},
		{Limits{MemoryBytes: 100}, []string{"page"}},
	} {
		_, err := s.Limits(c.req)
		if !errors.Is(err, ErrLimit) {
			t.Errorf("%+v: got %v, want ErrLimit", c.req, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q lacks %q", c.req, err, w)
			}
		}
	}
	// A node with lower maximums lowers the defaults too, and says so in refusals.
	small, err := Open(context.Background(), Config{Dir: t.TempDir(), Isolation: InProcess, Max: Limits{Deadline: 5 * time.Second, MemoryBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if l, err := small.Limits(Limits{}); err != nil || l.Deadline != 5*time.Second || l.MemoryBytes != 64<<20 {
		t.Fatalf("defaults under a small max: %+v %v", l, err)
	}
	if _, err := small.Limits(Limits{MemoryBytes: 128 << 20}); err == nil || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("got %v", err)
	}
}

func TestDigest(t *testing.T) {
	a := Outcome{Status: StatusOK, Stdout: []byte("x"), Stderr: []byte("log1"), Progress: 0.5, Duration: time.Second, Message: "m"}
	b := Outcome{Status: StatusOK, Stdout: []byte("x"), Stderr: []byte("log2"), Progress: 1, Duration: time.Hour}
	if computeDigest(&a) != computeDigest(&b) {
		t.Fatal("outcomes equal in status, code, trap and stdout must have equal digests")
	}
	for name, c := range map[string]Outcome{
		"stdout": {Status: StatusOK, Stdout: []byte("y")},
		"status": {Status: StatusExit, Stdout: []byte("x")},
		"code":   {Status: StatusOK, ExitCode: 1, Stdout: []byte("x")},
		"trap":   {Status: StatusOK, Trap: "unreachable", Stdout: []byte("x")},
	} {
		if computeDigest(&c) == computeDigest(&a) {
			t.Errorf("digest ignores %s", name)
		}
	}
	// Field boundaries are unambiguous.
	x := Outcome{Status: "ab", Trap: "c"}
	y := Outcome{Status: "a", Trap: "bc"}
	if computeDigest(&x) == computeDigest(&y) {
		t.Error("digest encoding is ambiguous")
	}
	// Cut by wall-clock: partial stdout is not compared.
	d1 := Outcome{Status: StatusDeadline, Stdout: []byte("12")}
	d2 := Outcome{Status: StatusDeadline, Stdout: []byte("123")}
	if computeDigest(&d1) != computeDigest(&d2) {
		t.Error("deadline digests depend on how far the module got")
	}
	// Pin the encoding: changing it must be deliberate (bump digestVersion).
	if got := computeDigest(&Outcome{Status: StatusOK, Stdout: []byte("hello")}); got != pinnedDigest {
		t.Errorf("digest of ok/hello changed: %s", got)
	}
}

func TestDigestOfExecutions(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "echo/echo.wasm")
		a := execute(t, s, Task{Module: h, ItemID: "1", Input: []byte("same")})
		b := execute(t, s, Task{Module: h, ItemID: "2", Input: []byte("same")})
		c := execute(t, s, Task{Module: h, ItemID: "3", Input: []byte("different")})
		if a.Digest != b.Digest || a.Digest == c.Digest {
			t.Fatalf("digests: %s %s %s", a.Digest, b.Digest, c.Digest)
		}
	})
}

// pinnedDigest is the digest of Outcome{Status: ok, Stdout: "hello"} under digestVersion v1.
const pinnedDigest Hash = "sha256:9a99168ba158a9f22d38eee6f5aeddc87e19d9d77b6403c180d430396d13c91b"

func TestCapture(t *testing.T) {
	over := 0
	w := &capWriter{limit: 5, onOver: func() { over++ }}
	if n, err := w.Write([]byte("abc")); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := w.Write([]byte("defg")); n != 2 || err == nil || over != 1 {
		t.Fatal(n, err, over)
	}
	if _, err := w.Write([]byte("h")); err == nil || string(w.bytes()) != "abcde" || over != 1 {
		t.Fatal(err, string(w.bytes()), over)
	}
	tw := &tailWriter{limit: 4}
	for _, p := range []string{"ab", "cd"} {
		tw.Write([]byte(p))
	}
	if b, tr := tw.tail(); string(b) != "abcd" || tr {
		t.Fatalf("%q %v", b, tr)
	}
	for i := 0; i < 100; i++ {
		tw.Write([]byte{byte('0' + i%10)})
	}
	if b, tr := tw.tail(); string(b) != "6789" || !tr {
		t.Fatalf("%q %v", b, tr)
	}
	tw.Write([]byte("0123456789"))
	if b, tr := tw.tail(); string(b) != "6789" || !tr {
		t.Fatalf("%q %v", b, tr)
	}
}
