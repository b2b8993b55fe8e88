//go:build !wasip1

package guest

import (
	"bytes"
	"strings"
	"testing"
)

func resetCheckpoint(t *testing.T) {
	t.Helper()
	offGrid.Lock()
	offGrid.data = nil
	offGrid.Unlock()
	t.Cleanup(func() {
		offGrid.Lock()
		offGrid.data = nil
		offGrid.Unlock()
	})
}

func TestCheckpointOffGrid(t *testing.T) {
	resetCheckpoint(t)
	if data, ok, err := LoadCheckpoint(); data != nil || ok || err != nil {
		t.Fatalf("LoadCheckpoint before any save = %q, %v, %v; want none", data, ok, err)
	}
	if err := SaveCheckpoint(nil); err != nil {
		t.Fatal(err)
	}
	if data, ok, err := LoadCheckpoint(); len(data) != 0 || !ok || err != nil {
		t.Fatalf("an empty checkpoint is a checkpoint: got %q, %v, %v", data, ok, err)
	}
	state := []byte("step 3")
	if err := SaveCheckpoint(state); err != nil {
		t.Fatal(err)
	}
	state[0] = 'X' // the saved copy must not change
	data, ok, err := LoadCheckpoint()
	if !ok || err != nil || string(data) != "step 3" {
		t.Fatalf("LoadCheckpoint = %q, %v, %v; want \"step 3\"", data, ok, err)
	}
	big := bytes.Repeat([]byte{1}, MaxCheckpoint)
	if err := SaveCheckpoint(big); err != nil {
		t.Fatalf("a checkpoint of exactly 4 MiB: %v", err)
	}
	err = SaveCheckpoint(make([]byte, 5<<20))
	if err == nil || !strings.Contains(err.Error(), "checkpoint of 5 MiB exceeds the 4 MiB limit") {
		t.Fatalf("SaveCheckpoint(5 MiB) = %v", err)
	}
	if data, _, _ := LoadCheckpoint(); !bytes.Equal(data, big) {
		t.Fatal("a refused save replaced the checkpoint")
	}
}

func TestCheckpointErrors(t *testing.T) {
	for code, want := range map[uint32]string{
		0: "",
		1: "checkpoint of 4.5 MiB exceeds the 4 MiB limit",
		3: "outside the module's memory",
		7: "unknown code 7",
	} {
		err := saveCheckpointError(code, 9<<19)
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("saveCheckpointError(%d) = %v, want %q", code, err, want)
		}
	}
	if err := loadCheckpointError(-3); !strings.Contains(err.Error(), "buffer is outside the module's memory") {
		t.Errorf("loadCheckpointError(-3) = %v", err)
	}
	if got := fmtSize(17); got != "17 bytes" {
		t.Errorf("fmtSize(17) = %q", got)
	}
}
