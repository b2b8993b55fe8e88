package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// DefaultMaxFrame is the largest frame body accepted when no other cap is
// configured.
const DefaultMaxFrame = 8 << 20

// frameHeaderLen is the size of the big-endian length prefix.
const frameHeaderLen = 4

// eagerAlloc is the largest body allocated in one piece up front. Larger
// bodies grow as bytes actually arrive, so a peer that declares 8 MiB and
// sends 10 bytes costs us 10 bytes, not 8 MiB.
const eagerAlloc = 64 << 10

// ErrFrameTooLarge reports a frame whose declared length exceeds the cap.
// It is always wrapped with the sizes involved.
var ErrFrameTooLarge = errors.New("transport: frame too large")

func frameTooLarge(n uint64, max int) error {
	return fmt.Errorf("%w: frame of %d bytes exceeds the %d-byte limit", ErrFrameTooLarge, n, max)
}

// WriteFrame writes payload preceded by its 4-byte big-endian length.
// Header and body go out in one Write so that a frame is never interleaved
// with another writer's bytes on the same writer.
func WriteFrame(w io.Writer, payload []byte) error {
	if uint64(len(payload)) > math.MaxUint32 {
		return frameTooLarge(uint64(len(payload)), math.MaxUint32)
	}
	buf := make([]byte, frameHeaderLen+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[frameHeaderLen:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame and returns its body. max <= 0 means
// DefaultMaxFrame. The declared length is checked against max before any body
// byte is read or allocated. It returns io.EOF only when r ends exactly on a
// frame boundary and io.ErrUnexpectedEOF when a frame is cut short.
// A zero-length frame yields an empty, non-nil slice.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err // io.EOF on a clean boundary, io.ErrUnexpectedEOF when cut
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, frameTooLarge(uint64(n), max)
	}
	if n <= eagerAlloc {
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, noEOF(err)
		}
		return body, nil
	}
	var buf bytes.Buffer
	buf.Grow(eagerAlloc)
	got, err := io.CopyN(&buf, r, int64(n))
	if got != int64(n) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// noEOF turns io.EOF inside a frame body into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
