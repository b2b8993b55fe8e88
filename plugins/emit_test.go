package plugins

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gridnode/gridnode/testdata"
)

func TestEmit(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		if raceEnabled && iso == Process {
			// Compiling a Go module takes ~15 s under the race detector; the
			// host side of emit in worker processes is covered by TestEmitABI.
			t.Skip("skipped with -race: see TestEmitABI/process")
		}
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "emit/emit.wasm")
		a := execute(t, s, Task{Module: h, ItemID: "a", Input: []byte("parent 3\n")})
		want := [][]byte{[]byte("child 0"), []byte("child 1"), []byte("child 2")}
		if a.Status != StatusOK || string(a.Stdout) != "parent 3 emitted 3\n" || !equalChildren(a.Emitted, want) {
			t.Fatalf("parent 3: status %s, stdout %q, emitted %q, message %q", a.Status, a.Stdout, a.Emitted, a.Message)
		}
		if a.Digest != computeDigest(&a) {
			t.Fatalf("digest %s is not the digest of the outcome with its children (%s)", a.Digest, computeDigest(&a))
		}
		if bare := (Outcome{Status: StatusOK, Stdout: a.Stdout}); computeDigest(&bare) == a.Digest {
			t.Fatal("the digest does not cover the emitted children")
		}
		b := execute(t, s, Task{Module: h, ItemID: "b", Input: []byte("parent 3\n")})
		if b.Digest != a.Digest || !equalChildren(b.Emitted, want) {
			t.Fatalf("same input, another item: digest %s, emitted %q; want %s", b.Digest, b.Emitted, a.Digest)
		}
		c := execute(t, s, Task{Module: h, ItemID: "a", Input: []byte("parent 2")})
		if c.Status != StatusOK || !equalChildren(c.Emitted, want[:2]) || c.Digest == a.Digest {
			t.Fatalf("parent 2: status %s, emitted %q, digest %s", c.Status, c.Emitted, c.Digest)
		}

		// A child runs the same module and emits nothing: its digest is the
		// one of an outcome without staged effects, as before emit existed.
		for _, i := range []int{0, 2, 1023} {
			o := execute(t, s, Task{Module: h, ItemID: fmt.Sprint("child-", i), Input: fmt.Appendf(nil, "child %d", i)})
			if o.Status != StatusOK || string(o.Stdout) != testdata.EmitChildOutput(i) || o.Emitted != nil {
				t.Fatalf("child %d: status %s, stdout %q (want %q), emitted %q", i, o.Status, o.Stdout, testdata.EmitChildOutput(i), o.Emitted)
			}
			if bare := (Outcome{Status: StatusOK, Stdout: o.Stdout}); o.Digest != computeDigest(&bare) {
				t.Fatalf("child %d: digest %s changed by the emit encoding", i, o.Digest)
			}
		}

		// The limit on children is reached exactly at 1024; the guest SDK
		// reports the 1025th, and the failed execution stages nothing.
		full := execute(t, s, Task{Module: h, ItemID: "full", Input: []byte("parent 1024")})
		if full.Status != StatusOK || len(full.Emitted) != MaxEmitItems || string(full.Emitted[1023]) != "child 1023" {
			t.Fatalf("parent 1024: status %s, %d children, message %q", full.Status, len(full.Emitted), full.Message)
		}
		over := execute(t, s, Task{Module: h, ItemID: "over", Input: []byte("parent 1025")})
		if over.Status != StatusExit || over.ExitCode != 1 || over.Emitted != nil ||
			!strings.Contains(string(over.Stderr), "emit: child 1024: guest: emit: more than 1024 children in one execution") {
			t.Fatalf("parent 1025: status %s exit %d, %d children, stderr %q", over.Status, over.ExitCode, len(over.Emitted), over.Stderr)
		}
		if bare := (Outcome{Status: StatusExit, ExitCode: 1}); over.Digest != computeDigest(&bare) {
			t.Fatal("a failed execution's digest depends on what it emitted before failing")
		}
	})
}

// TestEmitABI checks grid.emit's return codes at every limit with a WAT module
// that writes each code as a digit (see testdata/emitabi/emitabi.wat).
func TestEmitABI(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "emitabi/emitabi.wasm")
		mib := bytes.Repeat([]byte{0}, MaxEmitInput)
		tests := []struct {
			name, in, codes string
			emitted         [][]byte
		}{
			{"count", "n", strings.Repeat("0", MaxEmitItems) + "1", slicesOf([]byte{0}, MaxEmitItems)},
			{"bytes", "b", "2000020", [][]byte{mib, mib, mib, mib, {}}},
			{"bounds", "p", "3030", [][]byte{{}, []byte("z")}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				o := execute(t, s, Task{Module: h, ItemID: tc.name, Input: []byte(tc.in)})
				if o.Status != StatusOK || string(o.Stdout) != tc.codes {
					t.Fatalf("status %s, codes %.40q, want %.40q; message %q", o.Status, o.Stdout, tc.codes, o.Message)
				}
				if !equalChildren(o.Emitted, tc.emitted) {
					t.Fatalf("emitted %d children, want %d (or their bytes differ)", len(o.Emitted), len(tc.emitted))
				}
				if o.Digest != computeDigest(&o) {
					t.Fatal("digest does not match the outcome")
				}
			})
		}
		t.Run("trap after emit", func(t *testing.T) {
			o := execute(t, s, Task{Module: h, ItemID: "trap", Input: []byte("t")})
			if o.Status != StatusTrap || o.Trap != "unreachable" || o.Emitted != nil {
				t.Fatalf("status %s trap %q, emitted %q; want a trap that stages nothing", o.Status, o.Trap, o.Emitted)
			}
			if bare := (Outcome{Status: StatusTrap, Trap: "unreachable"}); o.Digest != computeDigest(&bare) {
				t.Fatal("a trapped execution's digest depends on what it emitted before the trap")
			}
		})
	})
}

func TestEmitNamedInMissingImports(t *testing.T) {
	s := openSandbox(t, InProcess, "")
	_, err := s.AddModule(context.Background(), readTestdata(t, "hostile/badimport.wasm"))
	if err == nil || !strings.Contains(err.Error(), "grid.emit") || !strings.Contains(err.Error(), "grid.progress") {
		t.Fatalf("AddModule(badimport) = %v, want the grid's imports listed, grid.emit among them", err)
	}
}

func TestDigestOfEmitted(t *testing.T) {
	base := Outcome{Status: StatusOK, Stdout: []byte("x")}
	with := func(children ...string) Outcome {
		o := base
		for _, c := range children {
			o.Emitted = append(o.Emitted, []byte(c))
		}
		return o
	}
	digests := map[Hash]string{}
	for name, o := range map[string]Outcome{
		"none": base, "a": with("a"), "ab": with("ab"), "a,b": with("a", "b"), "b,a": with("b", "a"),
		"empty child": with(""), "two empty": with("", ""),
	} {
		d := computeDigest(&o)
		if other, dup := digests[d]; dup {
			t.Errorf("children %s and %s have the same digest", name, other)
		}
		digests[d] = name
	}
	if empty := (Outcome{Status: StatusOK, Stdout: []byte("x"), Emitted: [][]byte{}}); computeDigest(&empty) != computeDigest(&base) {
		t.Error("an empty, non-nil Emitted changes the digest")
	}
	// Pin the encoding with children, as TestDigest does without.
	if o := with("child 0", "child 1"); computeDigest(&o) != pinnedEmitDigest {
		t.Errorf("digest of ok/x with two children changed: %s", computeDigest(&o))
	}
	// seal drops the effects of an execution that did not succeed.
	failed := with("a")
	failed.Status = StatusExit
	failed.seal()
	if failed.Emitted != nil || failed.Digest != computeDigest(&Outcome{Status: StatusExit, Stdout: []byte("x")}) {
		t.Errorf("seal kept the children of a failed execution: %q", failed.Emitted)
	}
}

// pinnedEmitDigest is the digest of Outcome{Status: ok, Stdout: "x", Emitted: ["child 0", "child 1"]},
// checked against an independent encoder of the layout in computeDigest's comment.
const pinnedEmitDigest Hash = "sha256:53e7632e3c7f2875359a5416da6c9c04a3e64bffecbf2c42f95c522089e36b02"

func equalChildren(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func slicesOf(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
