package sched

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gridnode/gridnode/sdk/api"
)

// A checkpoint lives until its item's result commits, in the same
// transaction, or until its job ends; one saved for an unknown job is not
// kept.
func TestStoreCheckpointsEndWithTheirItems(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := &jobRecord{ID: "n1-1-1", State: stateReceiving, Created: time.Now()}
	if err := s.Begin(rec); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendInputs(rec.ID, 0, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	rec.Items, rec.State = 2, api.JobRunning
	if _, err := s.Accept(rec); err != nil {
		t.Fatal(err)
	}
	err = s.PutCheckpoints([]ckptItem{{Job: rec.ID, Index: 0, Sealed: []byte("c0")}, {Job: rec.ID, Index: 1, Sealed: []byte("c1")}, {Job: "n9-1-1", Index: 0, Sealed: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Checkpoint(rec.ID, 1)); got != "c1" {
		t.Fatalf("checkpoint of item 1: %q, want c1", got)
	}
	if got := s.Checkpoint("n9-1-1", 0); got != nil {
		t.Fatalf("a checkpoint of a job the store does not hold was kept: %q", got)
	}
	if _, err := s.Commit([]pendingResult{{jobID: rec.ID, res: api.Result{Index: 0, Status: "ok"}}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Checkpoint(rec.ID, 0); got != nil {
		t.Fatalf("item 0 committed, its checkpoint %q is still kept", got)
	}
	if got := string(s.Checkpoint(rec.ID, 1)); got != "c1" {
		t.Fatalf("item 1 is open, its checkpoint is %q", got)
	}
	if err := s.SetState(rec.ID, api.JobCancelled, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := s.Checkpoint(rec.ID, 1); got != nil {
		t.Fatalf("the job ended, a checkpoint %q is still kept", got)
	}
}
