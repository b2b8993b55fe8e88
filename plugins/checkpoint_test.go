package plugins

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridnode/gridnode/testdata"
)

var (
	ckptModule = HashOf([]byte("module a"))
	ckptOther  = HashOf([]byte("module b"))
)

func TestSealOpenRoundTrip(t *testing.T) {
	for _, payload := range [][]byte{nil, {}, []byte("state"), bytes.Repeat([]byte{0xa5}, MaxCheckpoint)} {
		sealed := SealCheckpoint(ckptModule, "job-1/item-7", 42, payload)
		got, seq, err := OpenCheckpoint(sealed, ckptModule, "job-1/item-7")
		if err != nil || seq != 42 || !bytes.Equal(got, payload) {
			t.Fatalf("payload of %d bytes: got %d bytes, seq %d, err %v", len(payload), len(got), seq, err)
		}
	}
}

// TestSealLayout pins the envelope documented in doc.go with an independent encoder.
func TestSealLayout(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("GNCK\x01")
	b.Write([]byte{0, byte(len(ckptModule))})
	b.WriteString(string(ckptModule))
	b.Write([]byte{0, 0, 0, 2})
	b.WriteString("it")
	b.Write([]byte{0, 0, 0, 0, 0, 0, 1, 2})
	b.Write([]byte{0, 0, 0, 3})
	b.WriteString("abc")
	sum := HashOf(b.Bytes()) // sha256 in text form; compare its hex
	sealed := SealCheckpoint(ckptModule, "it", 258, []byte("abc"))
	if !bytes.HasPrefix(sealed, b.Bytes()) || fmt.Sprintf("sha256:%x", sealed[b.Len():]) != string(sum) {
		t.Fatalf("sealed = %q\nwant   %q + sha256", sealed, b.Bytes())
	}
}

func TestOpenCheckpointRefuses(t *testing.T) {
	good := SealCheckpoint(ckptModule, "job-1/item-7", 3, make([]byte, 4000))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-100] ^= 1
	version := bytes.Clone(good)
	version[4] = 9
	huge := SealCheckpoint(ckptModule, "i", 1, nil)
	copy(huge[len(huge)-sha256Len-4:], []byte{0xff, 0xff, 0xff, 0xff})
	tests := []struct {
		name   string
		sealed []byte
		module Hash
		item   string
		want   string
	}{
		{"garbage", []byte("hello, this is not a checkpoint"), ckptModule, "job-1/item-7", "not a checkpoint (no GNCK header)"},
		{"empty", nil, ckptModule, "job-1/item-7", "not a checkpoint (no GNCK header)"},
		{"header only", good[:20], ckptModule, "job-1/item-7", "checkpoint is truncated: 20 bytes, too short for its header"},
		{"truncated", good[:120], ckptModule, "job-1/item-7", "checkpoint is truncated: 120 bytes, the header says 4,"},
		{"trailing", append(bytes.Clone(good), 0), ckptModule, "job-1/item-7", "checkpoint is corrupted: 1 extra byte(s) after its checksum"},
		{"corrupted", corrupt, ckptModule, "job-1/item-7", "checkpoint is corrupted: its checksum does not match"},
		{"version", version, ckptModule, "job-1/item-7", "checkpoint format version 9 is not supported"},
		{"huge", huge, ckptModule, "i", "over the 4 MiB limit"},
		{"other module", good, ckptOther, "job-1/item-7", "checkpoint was saved by module " + ckptModule.short() + "…, not " + ckptOther.short() + "…: it cannot resume this execution"},
		{"other item", good, ckptModule, "job-1/item-8", `checkpoint belongs to item "job-1/item-7", not "job-1/item-8"`},
		{"other job", good, ckptModule, "job-2/item-7", `checkpoint belongs to item "job-1/item-7", not "job-2/item-7"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := OpenCheckpoint(tc.sealed, tc.module, tc.item)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenCheckpoint = %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("%v does not wrap ErrCheckpoint", err)
			}
		})
	}
}

const sha256Len = 32

// TestOpenCheckpointEveryFlip: no single-byte change of a sealed checkpoint
// opens, whatever byte and whatever change (the seed is printed to replay).
func TestOpenCheckpointEveryFlip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	payload := make([]byte, 1+rng.IntN(300))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	sealed := SealCheckpoint(ckptModule, "job-1/item-7", rng.Uint64(), payload)
	for i := range sealed {
		b := bytes.Clone(sealed)
		b[i] ^= byte(1 + rng.IntN(255))
		if _, _, err := OpenCheckpoint(b, ckptModule, "job-1/item-7"); err == nil {
			t.Fatalf("seed %d: changing byte %d of %d to %#x still opens", seed, i, len(sealed), b[i])
		}
	}
	for n := range len(sealed) {
		if _, _, err := OpenCheckpoint(sealed[:n], ckptModule, "job-1/item-7"); err == nil {
			t.Fatalf("the first %d of %d bytes open", n, len(sealed))
		}
	}
}

// FuzzOpenCheckpoint: a checkpoint comes from another node; no input may
// panic, and whatever opens must be what was sealed.
func FuzzOpenCheckpoint(f *testing.F) {
	f.Add(SealCheckpoint(ckptModule, "i", 1, []byte("state")))
	f.Add([]byte("GNCK\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, seq, err := OpenCheckpoint(b, ckptModule, "i")
		if err != nil {
			return
		}
		if !bytes.Equal(SealCheckpoint(ckptModule, "i", seq, payload), b) {
			t.Fatalf("%q opens but is not what sealing its payload gives", b)
		}
	})
}

func TestDigestIgnoresCheckpoints(t *testing.T) {
	o := Outcome{Status: StatusOK, Stdout: []byte("x")}
	r := o
	r.Resumed, r.CheckpointRefused = true, "checkpoint is corrupted: its checksum does not match"
	if computeDigest(&o) != computeDigest(&r) {
		t.Fatal("Resumed or CheckpointRefused changes the digest")
	}
}

// collector gathers the checkpoints an execution delivers.
type collector struct {
	mu     sync.Mutex
	sealed [][]byte
}

func (c *collector) add(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sealed = append(c.sealed, b)
}

func (c *collector) list() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sealed
}

func TestCheckpointResume(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		if raceEnabled && iso == Process {
			t.Skip("skipped with -race (compiling a Go module is slow): see TestCheckpointABI/process")
		}
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "count/count.wasm")
		const steps = 10
		input := []byte(fmt.Sprintf("%d 2\n", steps))
		want := testdata.CountOutput(steps)

		var saved collector
		full := execute(t, s, Task{Module: h, ItemID: "job-1/count", Input: input, OnCheckpoint: saved.add})
		if full.Status != StatusOK || string(full.Stdout) != want || full.Resumed || full.CheckpointRefused != "" || full.Progress != 1 {
			t.Fatalf("fault-free run: status %s, stdout %q (want %q), resumed %v, refused %q, progress %v, message %q",
				full.Status, full.Stdout, want, full.Resumed, full.CheckpointRefused, full.Progress, full.Message)
		}
		ckpts := saved.list()
		if len(ckpts) != steps/2 {
			t.Fatalf("%d checkpoints, want %d", len(ckpts), steps/2)
		}
		for i, c := range ckpts {
			payload, seq, err := OpenCheckpoint(c, h, "job-1/count")
			if err != nil || seq != uint64(i+1) || len(payload) != 16 || payload[0] != byte(2*(i+1)) {
				t.Fatalf("checkpoint %d: seq %d, payload %x, err %v", i, seq, payload, err)
			}
		}

		var again collector
		mid := ckpts[1] // step 4, seq 2
		r := execute(t, s, Task{Module: h, ItemID: "job-1/count", Input: input, Checkpoint: mid, OnCheckpoint: again.add})
		if r.Status != StatusOK || string(r.Stdout) != want || r.Digest != full.Digest || !r.Resumed || r.CheckpointRefused != "" {
			t.Fatalf("resumed run: status %s, stdout %q, digest equal %v, resumed %v, refused %q, message %q",
				r.Status, r.Stdout, r.Digest == full.Digest, r.Resumed, r.CheckpointRefused, r.Message)
		}
		if !strings.Contains(string(r.Stderr), "resumed at step 4\n") {
			t.Fatalf("stderr %q does not say where it resumed", r.Stderr)
		}
		// Steps 6, 8 and 10 saved again, numbered on from the resumed one.
		if got := again.list(); len(got) != 3 {
			t.Fatalf("resumed run saved %d checkpoints, want 3", len(got))
		}
		for i, c := range again.list() {
			_, seq, err := OpenCheckpoint(c, h, "job-1/count")
			if err != nil || seq != uint64(3+i) {
				t.Fatalf("resumed run's checkpoint %d: seq %d, err %v; want seq %d", i, seq, err, 3+i)
			}
			if !bytes.Equal(c, ckpts[2+i]) {
				t.Fatalf("resumed run's checkpoint %d differs from the fault-free run's", i)
			}
		}

		otherModule := addTestdata(t, s, "emit/emit.wasm")
		corrupt := bytes.Clone(mid)
		corrupt[len(corrupt)/2] ^= 0x40
		for _, tc := range []struct {
			name, want string
			sealed     []byte
		}{
			{"corrupted", "its checksum does not match", corrupt},
			{"truncated", "checkpoint is truncated", mid[:len(mid)-1]},
			{"other module", "cannot resume this execution", SealCheckpoint(otherModule, "job-1/count", 1, mid[len(mid)-48:len(mid)-32])},
			{"other item", `belongs to item "job-1/other"`, SealCheckpoint(h, "job-1/other", 1, make([]byte, 16))},
			{"garbage", "not a checkpoint", []byte("resume from step 4, please")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := execute(t, s, Task{Module: h, ItemID: "job-1/count", Input: input, Checkpoint: tc.sealed})
				if o.Status != StatusOK || string(o.Stdout) != want || o.Digest != full.Digest || o.Resumed {
					t.Fatalf("status %s, stdout %q, digest equal %v, resumed %v, message %q", o.Status, o.Stdout, o.Digest == full.Digest, o.Resumed, o.Message)
				}
				if !strings.Contains(o.CheckpointRefused, tc.want) || strings.Contains(string(o.Stderr), "resumed") {
					t.Fatalf("refused %q (want it to contain %q), stderr %q", o.CheckpointRefused, tc.want, o.Stderr)
				}
			})
		}
	})
}

// TestCheckpointSurvivesDeadline: the checkpoints of an execution that runs
// out of time reach the caller while it runs, and the next execution resumes
// from the latest.
func TestCheckpointSurvivesDeadline(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		if raceEnabled {
			t.Skip("skipped with -race (compiling a Go module is slow)")
		}
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "count/count.wasm")
		input := []byte("1000000 1")
		var saved collector
		o := execute(t, s, Task{Module: h, ItemID: "long", Input: input, OnCheckpoint: saved.add, Limits: Limits{Deadline: 300 * time.Millisecond}})
		ckpts := saved.list()
		if o.Status != StatusDeadline || len(ckpts) == 0 {
			t.Fatalf("status %s with %d checkpoints; want deadline after some", o.Status, len(ckpts))
		}
		last := ckpts[len(ckpts)-1]
		payload, seq, err := OpenCheckpoint(last, h, "long")
		if err != nil || seq != uint64(len(ckpts)) {
			t.Fatalf("latest checkpoint: seq %d of %d, err %v", seq, len(ckpts), err)
		}
		step := uint64(payload[0]) | uint64(payload[1])<<8 | uint64(payload[2])<<16
		r := execute(t, s, Task{Module: h, ItemID: "long", Input: input, Checkpoint: last, Limits: Limits{Deadline: 300 * time.Millisecond}})
		if !strings.Contains(string(r.Stderr), fmt.Sprintf("resumed at step %d\n", step)) {
			t.Fatalf("stderr %q, want it to resume at step %d", r.Stderr, step)
		}
		if !r.Resumed || r.Status != StatusDeadline {
			t.Fatalf("resumed %v, status %s", r.Resumed, r.Status)
		}
	})
}

// TestCheckpointABI checks the raw return codes of grid.checkpoint_save and
// grid.checkpoint_load with a WAT module (see testdata/ckptabi/ckptabi.wat).
func TestCheckpointABI(t *testing.T) {
	both(t, func(t *testing.T, iso Isolation) {
		s := openSandbox(t, iso, "")
		h := addTestdata(t, s, "ckptabi/ckptabi.wasm")
		t.Run("limits", func(t *testing.T) {
			var saved collector
			o := execute(t, s, Task{Module: h, ItemID: "abi", Input: []byte("s"), OnCheckpoint: saved.add})
			if o.Status != StatusOK || string(o.Stdout) != "-1 1 1 3 3 0 0 0 2 2 -3 2 ok" || o.Resumed {
				t.Fatalf("status %s, stdout %q, resumed %v, message %q", o.Status, o.Stdout, o.Resumed, o.Message)
			}
			got := saved.list()
			if len(got) != 2 {
				t.Fatalf("%d checkpoints delivered, want 2 (the refused saves deliver nothing)", len(got))
			}
			for i, want := range []string{"", "ok"} {
				payload, seq, err := OpenCheckpoint(got[i], h, "abi")
				if err != nil || seq != uint64(i+1) || string(payload) != want {
					t.Fatalf("checkpoint %d: %q seq %d err %v", i, payload, seq, err)
				}
			}
		})
		t.Run("resume", func(t *testing.T) {
			var saved collector
			o := execute(t, s, Task{Module: h, ItemID: "abi", Input: []byte("r"), OnCheckpoint: saved.add,
				Checkpoint: SealCheckpoint(h, "abi", 5, []byte("hi"))})
			if o.Status != StatusOK || string(o.Stdout) != "2 0 hi" || !o.Resumed {
				t.Fatalf("status %s, stdout %q, resumed %v, message %q", o.Status, o.Stdout, o.Resumed, o.Message)
			}
			if got := saved.list(); len(got) != 1 {
				t.Fatalf("%d checkpoints", len(got))
			} else if payload, seq, err := OpenCheckpoint(got[0], h, "abi"); err != nil || seq != 6 || string(payload) != "hi" {
				t.Fatalf("checkpoint after resuming from seq 5: %q seq %d err %v; want seq 6", payload, seq, err)
			}
			n := execute(t, s, Task{Module: h, ItemID: "abi", Input: []byte("r")})
			if n.Status != StatusOK || string(n.Stdout) != "-1 " || n.Resumed {
				t.Fatalf("without a checkpoint: status %s, stdout %q, resumed %v", n.Status, n.Stdout, n.Resumed)
			}
			if n.Digest == o.Digest {
				t.Fatal("different output, same digest")
			}
		})
		t.Run("trap after save", func(t *testing.T) {
			var saved collector
			o := execute(t, s, Task{Module: h, ItemID: "abi", Input: []byte("t"), OnCheckpoint: saved.add})
			if o.Status != StatusTrap || len(saved.list()) != 1 {
				t.Fatalf("status %s, %d checkpoints; want a trap after one delivered checkpoint", o.Status, len(saved.list()))
			}
		})
		t.Run("refused before the run", func(t *testing.T) {
			o := execute(t, s, Task{Module: h, ItemID: "abi", Input: []byte("r"), Checkpoint: SealCheckpoint(h, "another", 1, []byte("hi"))})
			if o.Status != StatusOK || string(o.Stdout) != "-1 " || !strings.Contains(o.CheckpointRefused, `belongs to item "another", not "abi"`) {
				t.Fatalf("status %s, stdout %q, refused %q", o.Status, o.Stdout, o.CheckpointRefused)
			}
		})
	})
}

func TestCheckpointNamedInMissingImports(t *testing.T) {
	s := openSandbox(t, InProcess, "")
	_, err := s.AddModule(t.Context(), readTestdata(t, "hostile/badimport.wasm"))
	if err == nil || !strings.Contains(err.Error(), "grid.checkpoint_save") || !strings.Contains(err.Error(), "grid.checkpoint_load") {
		t.Fatalf("AddModule(badimport) = %v, want the checkpoint imports listed", err)
	}
}
