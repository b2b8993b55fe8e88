package plugins

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestProtocolRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := &message{Kind: msgRun, ID: 7, Task: &Task{Module: HashOf(nil), ItemID: "i", Input: []byte("x"), Env: map[string]string{"a": "b"}}, Scratch: "/s"}
	if err := writeMessage(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := readMessage(&buf)
	if err != nil || out.Kind != msgRun || out.ID != 7 || out.Task.ItemID != "i" || out.Task.Env["a"] != "b" || out.Scratch != "/s" {
		t.Fatalf("%+v %v", out, err)
	}
	var huge [4]byte
	binary.BigEndian.PutUint32(huge[:], maxFrame+1)
	if _, err := readMessage(bytes.NewReader(huge[:])); err == nil {
		t.Fatal("accepted a frame over the cap")
	}
}

// FuzzReadMessage: the supervisor decodes frames from worker processes that
// run untrusted code; no input may panic or allocate past the cap.
func FuzzReadMessage(f *testing.F) {
	var buf bytes.Buffer
	writeMessage(&buf, &message{Kind: msgResult, ID: 1, Result: &runResult{Outcome: Outcome{Status: StatusOK, Stdout: []byte("hi")}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		readMessage(bytes.NewReader(b))
	})
}
