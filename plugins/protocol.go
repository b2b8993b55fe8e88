package plugins

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
)

// The worker protocol: each frame is a 4-byte big-endian length followed by
// that many bytes of one gob-encoded message. The supervisor sends init, then
// run and cancel; the worker answers ready, then started (module loaded,
// deadline running) and one result per run.
// Frames above maxFrame are refused before any allocation.

const maxFrame = 512 << 20

type msgKind uint8

const (
	msgInit msgKind = iota + 1
	msgReady
	msgRun
	msgCancel
	msgResult
	msgStarted // the module is loaded and the deadline starts now
)

type message struct {
	Kind    msgKind
	ID      uint64
	Dir     string     // init: the plugins state directory
	Task    *Task      // run
	Scratch string     // run: scratch directory to create, mount at /tmp and remove
	Result  *runResult // result
}

func writeMessage(w io.Writer, m *message) error {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	if err := gob.NewEncoder(&buf).Encode(m); err != nil {
		return fmt.Errorf("plugins: encode frame: %w", err)
	}
	n := buf.Len() - 4
	if n > maxFrame {
		return fmt.Errorf("plugins: frame of %d bytes exceeds the %d byte cap", n, maxFrame)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(n))
	_, err := w.Write(b)
	return err
}

func readMessage(r io.Reader) (*message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("plugins: frame of %d bytes exceeds the %d byte cap", n, maxFrame)
	}
	// Read in bounded chunks so a lying length cannot make us allocate it up front.
	var body bytes.Buffer
	if _, err := io.CopyN(&body, r, int64(n)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	m := new(message)
	if err := gob.NewDecoder(&body).Decode(m); err != nil {
		return nil, fmt.Errorf("plugins: decode frame: %w", err)
	}
	if m.Kind < msgInit || m.Kind > msgStarted {
		return nil, fmt.Errorf("plugins: unknown frame kind %d", m.Kind)
	}
	return m, nil
}
