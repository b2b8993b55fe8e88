package plugins

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

type hostileCase struct {
	file       string
	status     Status
	trap       string
	msg        []string // substrings the message must contain
	addErr     error    // AddModule must refuse it with this
	addMsg     string
	stderrTrun bool
	deadline   time.Duration // overrides hostileLimits.Deadline
}

var hostileCases = []hostileCase{
	{file: "hostile/loop.wasm", status: StatusDeadline, msg: []string{"300ms deadline"}},
	{file: "hostile/recurse.wasm", status: StatusDeadline, msg: []string{"300ms deadline"}},
	{file: "hostile/memhog.wasm", status: StatusMemory, trap: "unreachable", deadline: 3 * time.Second, msg: []string{"memory limit of 16 MiB"}},
	{file: "gohog/gohog.wasm", status: StatusMemory, deadline: 3 * time.Second, msg: []string{"memory limit of 16 MiB", "out of memory"}},
	{file: "hostile/trap.wasm", status: StatusTrap, trap: "unreachable", msg: []string{"trap: unreachable in item"}},
	{file: "hostile/divzero.wasm", status: StatusTrap, trap: "integer divide by zero", msg: []string{"integer divide by zero"}},
	{file: "hostile/flood.wasm", status: StatusOutputTooLarge, msg: []string{"stdout exceeded the 64 KiB limit"}},
	{file: "hostile/logflood.wasm", status: StatusDeadline, stderrTrun: true, msg: []string{"deadline"}},
	{file: "hostile/badimport.wasm", status: StatusMissingImport, addErr: ErrMissingImport, addMsg: "env.nonexistent", msg: []string{"env.nonexistent", "wasi_snapshot_preview1"}},
	{file: "hostile/component.wasm", status: StatusInvalidModule, addErr: ErrInvalidModule, addMsg: "component", msg: []string{"rebuild for wasm32-wasip1"}},
}

var hostileLimits = Limits{Deadline: 300 * time.Millisecond, MemoryBytes: 16 << 20, StdoutBytes: 64 << 10, StderrBytes: 4 << 10}

func TestHostile(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		echo := addTestdata(t, s, "echo/echo.wasm")
		for _, c := range hostileCases {
			t.Run(strings.TrimSuffix(c.file[strings.Index(c.file, "/")+1:], ".wasm"), func(t *testing.T) {
				wasm := readTestdata(t, c.file)
				h, err := s.AddModule(context.Background(), wasm)
				if c.addErr != nil {
					if !errors.Is(err, c.addErr) || !strings.Contains(err.Error(), c.addMsg) {
						t.Fatalf("AddModule: got %v, want %v mentioning %q", err, c.addErr, c.addMsg)
					}
					if s.HasModule(HashOf(wasm)) {
						t.Fatal("a refused module was stored")
					}
					// A module that reached the store anyway (e.g. written by an
					// older version) is classified at execution time.
					h = HashOf(wasm)
					if err := s.store.write(h, wasm); err != nil {
						t.Fatal(err)
					}
				} else if err != nil {
					t.Fatalf("AddModule: %v", err)
				}
				lim := hostileLimits
				if c.deadline != 0 {
					// Filling 16 MiB is slow under -race, and a worker
					// process starting on a loaded machine can take 300 ms:
					// these cases are about memory, not time.
					lim.Deadline = c.deadline
				}
				start := time.Now()
				o := execute(t, s, Task{Module: h, ItemID: "h-" + c.file, Limits: lim})
				elapsed := time.Since(start)
				if o.Status != c.status {
					t.Fatalf("status %s, want %s (message %q)", o.Status, c.status, o.Message)
				}
				if o.Trap != c.trap {
					t.Errorf("trap %q, want %q", o.Trap, c.trap)
				}
				for _, m := range c.msg {
					if !strings.Contains(o.Message, m) {
						t.Errorf("message %q lacks %q", o.Message, m)
					}
				}
				if o.StderrTruncated != c.stderrTrun {
					t.Errorf("stderr truncated %v, want %v", o.StderrTruncated, c.stderrTrun)
				}
				if len(o.Stderr) > hostileLimits.StderrBytes {
					t.Errorf("stderr is %d bytes, over its %d cap", len(o.Stderr), hostileLimits.StderrBytes)
				}
				if len(o.Stdout) > hostileLimits.StdoutBytes {
					t.Errorf("stdout is %d bytes, over its %d cap", len(o.Stdout), hostileLimits.StdoutBytes)
				}
				if max := lim.Deadline + time.Second; elapsed > max {
					t.Errorf("took %v, more than deadline + 1s", elapsed)
				}
				if o.Retriable() {
					t.Errorf("a hostile module's outcome must not be retriable")
				}
				checkEcho(t, s, echo)
			})
		}
	})
}

func TestComponentPreamble(t *testing.T) {
	comp := []byte("\x00asm\x0d\x00\x01\x00")
	err := checkPreamble(comp)
	if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "component") {
		t.Fatalf("got %v", err)
	}
	if err := checkPreamble([]byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Fatalf("core module refused: %v", err)
	}
	if err := checkPreamble([]byte("#!/bin/sh")); !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("got %v", err)
	}
	_ = os.Getpid
}
