package grid

import (
	"bytes"
	"testing"

	"github.com/gridnode/gridnode/transport"
)

// FuzzGridMessages decodes arbitrary bytes as every message a peer can send
// a node (heartbeat datagrams and the bodies of grid calls): decoding must
// refuse or succeed without panicking, and what decodes must re-encode to
// bytes that decode to the same message.
func FuzzGridMessages(f *testing.F) {
	seeds := []any{
		heartbeat{From: "n1", Inc: 2, To: "n2", Epoch: 7, Digest: 42, Load: 1, Free: 3, LeaseAge: 120, Leader: "n1", Want: true,
			InvVersion: 9, InvDigest: 5, InvFrom: 3, InvTo: 9, Inv: []Execution{{ID: "x", State: ExecFinished, Digest: []byte{1, 2}}}, Ack: 4, AckInc: 1},
		joinRequest{Member: Member{NodeID: "n3", Incarnation: 1, Addr: "h:1", Labels: map[string]string{"host": "h"}, Slots: 2, State: Alive}},
		leaveRequest{NodeID: "n3", Incarnation: 1},
		reportRequest{From: "n1", FromInc: 1, Epoch: 3, Dead: []Member{{NodeID: "n2", Incarnation: 1}}},
		viewRequest{Since: 4},
		viewResponse{Changes: []Change{{Kind: ChangeDeath, Member: Member{NodeID: "n2", Incarnation: 1}, Epoch: 5}}, Leader: "n1"},
		invPush{From: "n2", Inc: 1, Full: true, ToVer: 3, Digest: 9, Entries: []Execution{{ID: "y", State: ExecRunning}}},
	}
	for _, s := range seeds {
		b, err := transport.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, b, &heartbeat{}, func() any { return &heartbeat{} })
		roundTrip(t, b, &joinRequest{}, func() any { return &joinRequest{} })
		roundTrip(t, b, &reportRequest{}, func() any { return &reportRequest{} })
		roundTrip(t, b, &viewResponse{}, func() any { return &viewResponse{} })
		roundTrip(t, b, &invPush{}, func() any { return &invPush{} })
	})
}

func roundTrip(t *testing.T, b []byte, v any, fresh func() any) {
	if transport.Unmarshal(b, v) != nil {
		return
	}
	out, err := transport.Marshal(v)
	if err != nil {
		t.Fatalf("%T decoded but does not encode: %v", v, err)
	}
	again := fresh()
	if err := transport.Unmarshal(out, again); err != nil {
		t.Fatalf("%T re-encoded to bytes it refuses: %v", v, err)
	}
	out2, err := transport.Marshal(again)
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("%T does not survive a round trip: %x then %x (%v)", v, out, out2, err)
	}
}
