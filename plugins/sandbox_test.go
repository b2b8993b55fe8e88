package plugins

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEcho(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "echo/echo.wasm")
		if !s.HasModule(h) {
			t.Fatal("HasModule false after AddModule")
		}
		o := execute(t, s, Task{Module: h, ItemID: "1", Input: []byte("hello grid")})
		if o.Status != StatusOK || o.ExitCode != 0 || string(o.Stdout) != "hello grid" {
			t.Fatalf("got %+v", o)
		}
		if o.Digest == "" || o.Retriable() {
			t.Fatalf("digest %q retriable %v", o.Digest, o.Retriable())
		}
	})
}

func TestExitCode(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "exit3/exit3.wasm")
		o := execute(t, s, Task{Module: h, ItemID: "7"})
		if o.Status != StatusExit || o.ExitCode != 3 || string(o.Stderr) != "bye\n" {
			t.Fatalf("got status %s exit %d stderr %q", o.Status, o.ExitCode, o.Stderr)
		}
		if !strings.Contains(o.Message, "code 3") || !strings.Contains(o.Message, "bye") {
			t.Fatalf("message %q should name the code and the stderr tail", o.Message)
		}
	})
}

func TestModuleNotFound(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := HashOf([]byte("nothing"))
		o := execute(t, s, Task{Module: h, ItemID: "x"})
		if o.Status != StatusModuleNotFound || !o.Retriable() {
			t.Fatalf("got %s (retriable %v): %s", o.Status, o.Retriable(), o.Message)
		}
		if _, err := s.ModuleBytes(h); !errors.Is(err, ErrModuleNotFound) {
			t.Fatalf("ModuleBytes: %v", err)
		}
	})
}

func TestCancel(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		loop := addTestdata(t, s, "hostile/loop.wasm")
		echo := addTestdata(t, s, "echo/echo.wasm")
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		o := s.Execute(ctx, Task{Module: loop, ItemID: "c", Limits: Limits{Deadline: 10 * time.Second}})
		if o.Status != StatusCancelled || !o.Retriable() {
			t.Fatalf("got %s: %s", o.Status, o.Message)
		}
		if el := time.Since(start); el > 200*time.Millisecond+Grace+200*time.Millisecond {
			t.Fatalf("cancel took %v", el)
		}
		checkEcho(t, s, echo)
	})
}
