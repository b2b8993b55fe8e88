package plugins

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestProtocolRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := newMsgEncoder(&buf)
	msgs := []*message{
		{Kind: msgRun, ID: 7, Task: &Task{Module: HashOf(nil), ItemID: "i", Input: []byte("x"), Env: map[string]string{"a": "b"}}, Scratch: "/s"},
		{Kind: msgRun, ID: 8, Task: &Task{ItemID: "j", Checkpoint: []byte("GNCK…"), OnCheckpoint: func([]byte) {}}},
		{Kind: msgCheckpoint, ID: 8, Sealed: []byte("sealed")},
		{Kind: msgResult, ID: 8, Result: &runResult{Outcome: Outcome{Status: StatusOK, Stdout: []byte("hi"), Emitted: [][]byte{[]byte("c0"), {}, []byte("c2")}}}},
	}
	for _, m := range msgs {
		if err := enc.send(m); err != nil {
			t.Fatal(err)
		}
	}
	dec := newMsgDecoder(&buf)
	out, err := dec.recv()
	if err != nil || out.Kind != msgRun || out.ID != 7 || out.Task.ItemID != "i" || out.Task.Env["a"] != "b" || out.Scratch != "/s" {
		t.Fatalf("%+v %v", out, err)
	}
	if out, err := dec.recv(); err != nil || out.ID != 8 || out.Task.ItemID != "j" || string(out.Task.Checkpoint) != "GNCK…" || out.Task.OnCheckpoint != nil {
		t.Fatalf("second message on the same stream (a task's checkpoint crosses, its callback does not): %+v %v", out, err)
	}
	if out, err := dec.recv(); err != nil || out.Kind != msgCheckpoint || string(out.Sealed) != "sealed" {
		t.Fatalf("checkpoint frame: %+v %v", out, err)
	}
	if out, err := dec.recv(); err != nil || string(out.Result.Stdout) != "hi" || !equalChildren(out.Result.Emitted, msgs[3].Result.Emitted) {
		t.Fatalf("third message: %+v %v", out, err)
	}
	if _, err := dec.recv(); err == nil {
		t.Fatal("read past the end")
	}
	var huge [4]byte
	binary.BigEndian.PutUint32(huge[:], maxFrame+1)
	if _, err := newMsgDecoder(bytes.NewReader(huge[:])).recv(); err == nil {
		t.Fatal("accepted a frame over the cap")
	}
}

// FuzzReadMessage: the supervisor decodes frames from worker processes that
// run untrusted code; no input may panic or allocate past the cap.
func FuzzReadMessage(f *testing.F) {
	var buf bytes.Buffer
	newMsgEncoder(&buf).send(&message{Kind: msgResult, ID: 1, Result: &runResult{Outcome: Outcome{Status: StatusOK, Stdout: []byte("hi")}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := newMsgDecoder(bytes.NewReader(b))
		for range 4 {
			if _, err := dec.recv(); err != nil {
				return
			}
		}
	})
}
