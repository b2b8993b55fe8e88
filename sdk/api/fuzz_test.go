package api_test

import (
	"testing"

	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// FuzzDecodeMessages decodes untrusted bytes into every message a node or a
// client reads from the wire: no input may panic, and whatever decodes must
// encode again.
func FuzzDecodeMessages(f *testing.F) {
	seeds := []any{
		api.ModuleChunk{Data: []byte("\x00asm")},
		api.SubmitHeader{Spec: api.JobSpec{Module: "sha256:00", Args: []string{"a"}, Env: map[string]string{"K": "V"}, Files: map[string][]byte{"f": {1}}}},
		api.SubmitFrame{Batch: &api.ItemBatch{Inputs: [][]byte{[]byte("1"), nil}}},
		api.SubmitFrame{End: &api.SubmitEnd{Count: 2}},
		api.ResultsRequest{JobID: "n-1-1", Cursor: 7, Follow: true},
		api.ResultBatch{Results: []api.Result{{Seq: 1, Output: []byte("x")}}, Status: &api.JobStatus{ByStatus: map[string]uint64{"ok": 1}}},
		api.JobRef{JobID: "n-1-1"},
		api.NodeInfo{Labels: map[string]string{"host": "h"}},
		api.Members{Epoch: 3, Leader: "n1", Quorum: true, LeaseAge: 5, Members: []api.Member{{NodeID: "n1", State: "alive", LastHeard: -1, Labels: map[string]string{"zone": "z"}}}},
		api.LeaveReply{Epoch: 4},
	}
	for _, s := range seeds {
		b, err := transport.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xbf, 0xff})       // indefinite-length map
	f.Add([]byte{0xa2, 1, 1, 1, 2}) // duplicate key
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []func() any{
			func() any { return new(api.ModuleChunk) }, func() any { return new(api.SubmitHeader) },
			func() any { return new(api.SubmitFrame) }, func() any { return new(api.ResultsRequest) },
			func() any { return new(api.ResultBatch) }, func() any { return new(api.JobRef) },
			func() any { return new(api.JobStatus) }, func() any { return new(api.NodeInfo) },
			func() any { return new(api.SubmitReply) }, func() any { return new(api.ModulePushReply) },
			func() any { return new(api.Members) }, func() any { return new(api.MembersRequest) },
			func() any { return new(api.LeaveRequest) }, func() any { return new(api.LeaveReply) },
		}
		for _, mk := range targets {
			v := mk()
			if transport.Unmarshal(b, v) != nil {
				continue
			}
			if _, err := transport.Marshal(v); err != nil {
				t.Fatalf("%T decoded but does not encode: %v", v, err)
			}
		}
	})
}
