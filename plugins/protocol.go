package plugins

import (
	"bufio"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
)

// The worker protocol: each frame is a 4-byte big-endian length followed by
// that many bytes of one gob-encoded message. The supervisor sends init, then
// run and cancel; the worker answers ready, then started (module loaded,
// deadline running), a checkpoint frame for every checkpoint the guest saves
// while it runs, and one result per run.
// Frames above maxFrame are refused before any allocation.

const maxFrame = 512 << 20

type msgKind uint8

const (
	msgInit msgKind = iota + 1
	msgReady
	msgRun
	msgCancel
	msgResult
	msgStarted    // the module is loaded and the deadline starts now
	msgLoading    // a run sent as Loaded finds its module evicted: loading it first
	msgCheckpoint // the running execution saved a checkpoint (sealed), before its result
)

type message struct {
	Kind    msgKind
	ID      uint64
	Dir     string     // init: the plugins state directory
	Task    *Task      // run
	Scratch string     // run: root of the worker's scratch directories
	Loaded  bool       // run: the supervisor saw this worker load the module (no started frame needed)
	Result  *runResult // result
	Sealed  []byte     // checkpoint: a sealed checkpoint (see SealCheckpoint)
}

// msgEncoder writes one direction of the pipe. It keeps one gob stream, so
// type descriptors cross once per worker, not with every message (a fresh
// gob encoder per message cost more than the rest of an execution's
// overhead). Every Write of the gob stream becomes one length-prefixed frame.
// Not safe for concurrent use: a worker's pipe has one writer at a time.
type msgEncoder struct {
	bw  *bufio.Writer
	enc *gob.Encoder
}

func newMsgEncoder(w io.Writer) *msgEncoder {
	e := &msgEncoder{bw: bufio.NewWriter(w)}
	e.enc = gob.NewEncoder(frameWriter{e.bw})
	return e
}

func (e *msgEncoder) send(m *message) error {
	if err := e.enc.Encode(m); err != nil {
		return fmt.Errorf("plugins: encode frame: %w", err)
	}
	return e.bw.Flush()
}

// frameWriter prefixes every write with its length.
type frameWriter struct{ w io.Writer }

func (f frameWriter) Write(p []byte) (int, error) {
	if len(p) > maxFrame {
		return 0, fmt.Errorf("plugins: frame of %d bytes exceeds the %d byte cap", len(p), maxFrame)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(p)))
	if _, err := f.w.Write(hdr[:]); err != nil {
		return 0, err
	}
	return f.w.Write(p)
}

// msgDecoder reads one direction of the pipe (see msgEncoder).
type msgDecoder struct {
	dec *gob.Decoder
}

func newMsgDecoder(r io.Reader) *msgDecoder {
	return &msgDecoder{dec: gob.NewDecoder(&frameReader{r: bufio.NewReader(r)})}
}

func (d *msgDecoder) recv() (*message, error) {
	m := new(message)
	if err := d.dec.Decode(m); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("plugins: decode frame: %w", err)
	}
	if m.Kind < msgInit || m.Kind > msgCheckpoint {
		return nil, fmt.Errorf("plugins: unknown frame kind %d", m.Kind)
	}
	return m, nil
}

// frameReader strips the length prefixes, refusing a frame over the cap
// before reading it, so a lying length cannot make us allocate it.
type frameReader struct {
	r    io.Reader
	left uint32
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			return 0, err
		}
		f.left = binary.BigEndian.Uint32(hdr[:])
		if f.left > maxFrame {
			return 0, fmt.Errorf("plugins: frame of %d bytes exceeds the %d byte cap", f.left, maxFrame)
		}
		if f.left == 0 {
			return 0, io.ErrUnexpectedEOF
		}
	}
	if uint32(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint32(n)
	if err == io.EOF && f.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
