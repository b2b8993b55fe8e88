//go:build gridnode_faults

package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestFaultWrongOutput(t *testing.T) {
	if !FaultsBuilt() {
		t.Fatal("FaultsBuilt() = false in a gridnode_faults build")
	}
	both(t, func(t *testing.T, iso Isolation) {
		t.Setenv(faultWrongOutputEnv, "1")
		s := openSandbox(t, iso, "")
		echo := addTestdata(t, s, "echo/echo.wasm")
		o := execute(t, s, Task{Module: echo, ItemID: "1", Input: []byte("hello")})
		honest := Outcome{Status: StatusOK, Stdout: []byte("hello")}
		if o.Status != StatusOK || string(o.Stdout) != "hello"+faultSuffix {
			t.Fatalf("p=1: status %s, stdout %q; want ok and a corrupted stdout", o.Status, o.Stdout)
		}
		if o.Digest == computeDigest(&honest) || o.Digest != computeDigest(&o) {
			t.Fatalf("p=1: digest %s must differ from the honest one and match the corrupted outcome", o.Digest)
		}
		// Only ok outcomes are corrupted.
		exit3 := addTestdata(t, s, "exit3/exit3.wasm")
		if o := execute(t, s, Task{Module: exit3, ItemID: "3"}); o.Status != StatusExit || len(o.Stdout) != 0 {
			t.Fatalf("p=1 on a failing module: status %s, stdout %q", o.Status, o.Stdout)
		}
	})
}

func TestFaultWarnsAndKeepsChildren(t *testing.T) {
	t.Setenv(faultWrongOutputEnv, "1")
	var log strings.Builder
	s, err := Open(context.Background(), Config{Isolation: InProcess, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "FAULT INJECTION ACTIVE") {
		t.Fatalf("Open logged %q, want a loud warning", log.String())
	}
	// Children are kept: the outcome looks like an honest result.
	em := addTestdata(t, s, "emit/emit.wasm")
	o := execute(t, s, Task{Module: em, ItemID: "2", Input: []byte("parent 2")})
	if len(o.Emitted) != 2 || string(o.Stdout) != "parent 2 emitted 2\n"+faultSuffix || o.Digest != computeDigest(&o) {
		t.Fatalf("p=1 with children: stdout %q, %d children", o.Stdout, len(o.Emitted))
	}
}

func TestFaultNoneAtZero(t *testing.T) {
	t.Setenv(faultWrongOutputEnv, "0")
	s := openSandbox(t, InProcess, "")
	echo := addTestdata(t, s, "echo/echo.wasm")
	for i := range 20 {
		o := execute(t, s, Task{Module: echo, ItemID: fmt.Sprint(i), Input: []byte("hello")})
		if string(o.Stdout) != "hello" || o.Digest != computeDigest(&Outcome{Status: StatusOK, Stdout: []byte("hello")}) {
			t.Fatalf("p=0, item %d: stdout %q, digest %s", i, o.Stdout, o.Digest)
		}
	}
}

func TestFaultChoiceFollowsItem(t *testing.T) {
	const n = 2000
	for _, p := range []float64{0.1, 0.3, 0.5, 0.9} {
		hits := 0
		for i := range n {
			if faultyItem(fmt.Sprint("item-", i), p) {
				hits++
			}
		}
		if lo, hi := int(n*p*0.85), int(n*p*1.15); hits < lo || hits > hi {
			t.Errorf("p=%v: %d of %d items faulty, want %d..%d", p, hits, n, lo, hi)
		}
	}
	t.Setenv(faultWrongOutputEnv, "0.5")
	s := openSandbox(t, InProcess, "")
	echo := addTestdata(t, s, "echo/echo.wasm")
	for i := range 8 {
		id := fmt.Sprint("item-", i)
		a := execute(t, s, Task{Module: echo, ItemID: id, Input: []byte("x")})
		b := execute(t, s, Task{Module: echo, ItemID: id, Input: []byte("x")})
		if a.Digest != b.Digest || (string(a.Stdout) != "x") == !faultyItem(id, 0.5) {
			t.Fatalf("item %s: stdouts %q and %q, faulty %v: a faulty node must be consistently wrong per item", id, a.Stdout, b.Stdout, faultyItem(id, 0.5))
		}
	}
}

func TestFaultBadValueRefused(t *testing.T) {
	for _, v := range []string{"yes", "-0.1", "1.5", "NaN"} {
		t.Setenv(faultWrongOutputEnv, v)
		if s, err := Open(context.Background(), Config{Isolation: InProcess}); err == nil {
			s.Close()
			t.Errorf("%s=%q: Open succeeded, want an error", faultWrongOutputEnv, v)
		} else if !strings.Contains(err.Error(), faultWrongOutputEnv) {
			t.Errorf("%s=%q: error %q does not name the variable", faultWrongOutputEnv, v, err)
		}
	}
}
