package sched

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/testdata"
	"github.com/gridnode/gridnode/transport"
)

// TestResultsExpireAfterTheirTTLAndNotBefore drives the janitor's clock by hand.
func TestResultsExpireAfterTheirTTLAndNotBefore(t *testing.T) {
	net := transport.NewMemNetwork(1)
	n, err := StartNode(context.Background(), Config{
		DataDir: t.TempDir(), ListenAddr: "node:1", NodeID: "node", Isolation: plugins.InProcess, Slots: 1,
		Network: net.Host("node", transport.Peer{Role: transport.RoleNode, ID: "node"}),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h, err := n.sandbox.AddModule(context.Background(), testdata.Echo)
	if err != nil {
		t.Fatal(err)
	}
	spec := api.JobSpec{Module: string(h), Policy: api.Policy{ResultTTL: time.Hour}}
	rec := &jobRecord{ID: "node-1-1", Spec: spec, State: stateReceiving, Created: time.Now()}
	if err := n.store.Begin(rec); err != nil {
		t.Fatal(err)
	}
	if err := n.store.AppendInputs(rec.ID, 0, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	rec.Items, rec.State = 1, api.JobRunning
	if _, err := n.store.Accept(rec); err != nil {
		t.Fatal(err)
	}
	if err := n.sched.add(rec); err != nil {
		t.Fatal(err)
	}
	var st api.JobStatus
	for {
		var changed <-chan struct{}
		if st, changed, _ = n.sched.status(rec.ID); st.Done() {
			break
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("job never finished: %+v", st)
		}
	}
	// Stored times are whole seconds: compare to the second.
	if d := st.Expires.Sub(st.Finished) - time.Hour; st.State != api.JobDone || d < -time.Second || d > time.Second {
		t.Fatalf("status %+v: want done, expiring an hour after it finished", st)
	}
	n.collectExpired(st.Expires.Add(-time.Second))
	if _, err := n.jobStatus(rec.ID); err != nil {
		t.Fatalf("results collected before their TTL: %v", err)
	}
	n.collectExpired(st.Expires.Add(time.Second))
	if _, err := n.jobStatus(rec.ID); err == nil {
		t.Fatal("results still served after their TTL")
	}
	if _, err := n.store.Job(rec.ID); err == nil {
		t.Fatal("expired job still in the store")
	}
}
