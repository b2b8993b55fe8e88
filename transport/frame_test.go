package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	payloads := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{0xab}, 1000), bytes.Repeat([]byte{1}, eagerAlloc+12345)}
	var buf bytes.Buffer
	for _, p := range payloads {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range payloads {
		got, err := ReadFrame(&buf, 1<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got == nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := ReadFrame(&buf, 1<<20); err != io.EOF {
		t.Fatalf("at a clean boundary: got %v, want io.EOF", err)
	}
}

func TestFrameTruncated(t *testing.T) {
	var full bytes.Buffer
	WriteFrame(&full, []byte("hello, grid"))
	for n := 1; n < full.Len(); n++ {
		_, err := ReadFrame(bytes.NewReader(full.Bytes()[:n]), 0)
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("cut at %d of %d bytes: got %v, want io.ErrUnexpectedEOF", n, full.Len(), err)
		}
	}
	// A large declared body cut short takes the incremental path.
	hdr := binary.BigEndian.AppendUint32(nil, 1<<20)
	_, err := ReadFrame(bytes.NewReader(append(hdr, make([]byte, 100000)...)), 2<<20)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("large truncated body: got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameOversized(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, 1025)
	_, err := ReadFrame(bytes.NewReader(append(hdr, make([]byte, 1025)...)), 1024)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if want := "frame of 1025 bytes exceeds the 1024-byte limit"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	// Exactly at the cap is fine.
	var buf bytes.Buffer
	WriteFrame(&buf, make([]byte, 1024))
	if _, err := ReadFrame(&buf, 1024); err != nil {
		t.Fatalf("frame at the cap: %v", err)
	}
}

// A peer that declares a huge frame and sends a trickle must not make us
// allocate what it declared.
func TestFrameDeclaredLengthNotAllocated(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame)
	in := append(hdr, make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadFrame(bytes.NewReader(in), DefaultMaxFrame); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("10 reads of a 10-byte body declared as 8 MiB allocated %d bytes", grew)
	}
}

func TestFrameZeroLength(t *testing.T) {
	got, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 0}), 16)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want empty non-nil frame", got, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var two bytes.Buffer
	WriteFrame(&two, []byte("one"))
	WriteFrame(&two, []byte{})
	f.Add(two.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 0, 0, 5, 'a', 'b'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 1, 0})
	const max = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var re bytes.Buffer
		for {
			frame, err := ReadFrame(r, max)
			if err != nil {
				switch {
				case err == io.EOF, err == io.ErrUnexpectedEOF, errors.Is(err, ErrFrameTooLarge):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if err == io.EOF && !bytes.Equal(re.Bytes(), data) {
					t.Fatalf("clean EOF but frames re-encode to %x, input %x", re.Bytes(), data)
				}
				return
			}
			if len(frame) > max {
				t.Fatalf("frame of %d bytes passed a %d-byte cap", len(frame), max)
			}
			WriteFrame(&re, frame)
			if !bytes.HasPrefix(data, re.Bytes()) {
				t.Fatalf("re-encoded frames %x are not a prefix of the input %x", re.Bytes(), data)
			}
		}
	})
}
