package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
)

type failing struct{ err error }

func (f failing) Read([]byte) (int, error)  { return 0, f.err }
func (f failing) Write([]byte) (int, error) { return 0, f.err }

func TestRun(t *testing.T) {
	upper := func(in []byte) ([]byte, error) { return bytes.ToUpper(in), nil }
	boom := errors.New("primes: bad input \"x\"")
	tests := []struct {
		name     string
		in       string
		inErr    error
		outErr   error
		f        func([]byte) ([]byte, error)
		wantCode int
		wantOut  string
		wantLog  string
	}{
		{name: "ok", in: "abc", f: upper, wantOut: "ABC"},
		{name: "empty input", in: "", f: upper},
		{name: "f fails", in: "x", f: func([]byte) ([]byte, error) { return []byte("partial"), boom },
			wantCode: 1, wantLog: "primes: bad input \"x\"\n"},
		{name: "read fails", inErr: errors.New("EIO"), f: upper,
			wantCode: 1, wantLog: "guest: reading input: EIO\n"},
		{name: "write fails", in: "a", outErr: errors.New("EPIPE"), f: upper,
			wantCode: 1, wantLog: "guest: writing output: EPIPE\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in io.Reader = strings.NewReader(tc.in)
			if tc.inErr != nil {
				in = failing{tc.inErr}
			}
			var out bytes.Buffer
			var w io.Writer = &out
			if tc.outErr != nil {
				w = failing{tc.outErr}
			}
			var log bytes.Buffer
			code := run(in, w, &log, tc.f)
			if code != tc.wantCode || out.String() != tc.wantOut || log.String() != tc.wantLog {
				t.Errorf("run = %d, out %q, log %q; want %d, %q, %q",
					code, out.String(), log.String(), tc.wantCode, tc.wantOut, tc.wantLog)
			}
		})
	}
}

func TestRunPassesInputUnchanged(t *testing.T) {
	in := bytes.Repeat([]byte{0, 1, 0xff, '\n'}, 100_000)
	var got []byte
	run(bytes.NewReader(in), &bytes.Buffer{}, &bytes.Buffer{}, func(b []byte) ([]byte, error) {
		got = b
		return nil, nil
	})
	if !bytes.Equal(got, in) {
		t.Fatalf("f saw %d bytes, want the %d bytes of input", len(got), len(in))
	}
}

func TestClampFraction(t *testing.T) {
	tests := []struct {
		in     float64
		want   float64
		wantOK bool
	}{
		{0, 0, true}, {0.5, 0.5, true}, {1, 1, true},
		{-0.1, 0, true}, {1.5, 1, true},
		{math.Inf(1), 1, true}, {math.Inf(-1), 0, true},
		{math.NaN(), 0, false},
	}
	for _, tc := range tests {
		got, ok := clampFraction(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("clampFraction(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestLogfAddsOneNewline(t *testing.T) {
	var b bytes.Buffer
	logf(&b, "n=%d", 3)
	logf(&b, "done\n")
	if got, want := b.String(), "n=3\ndone\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}

func TestProgressIsNoOpNatively(t *testing.T) {
	Progress(0.5) // must neither panic nor block outside wasip1
	Progress(math.NaN())
}

func TestEmitFailsNatively(t *testing.T) {
	err := Emit([]byte("child 0"))
	if err == nil || !strings.Contains(err.Error(), "only inside the grid") {
		t.Fatalf("Emit outside wasip1 = %v, want an error saying it works only inside the grid", err)
	}
}

func TestEmitError(t *testing.T) {
	tests := []struct {
		code uint32
		n    int
		want string // "" = nil
	}{
		{0, 10, ""},
		{1, 10, "guest: emit: more than 1024 children in one execution"},
		{2, 1<<20 + 1, "guest: emit: child input of 1048577 bytes exceeds the 1048576 byte (1 MiB) limit per child"},
		{2, 1 << 20, "guest: emit: child input of 1048576 bytes would take this execution's children past 4194304 bytes (4 MiB) in total"},
		{3, 10, "guest: emit: the input is outside the module's memory"},
		{7, 10, "guest: emit: the host returned unknown code 7"},
	}
	for _, tc := range tests {
		err := emitError(tc.code, tc.n)
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("emitError(%d, %d) = %v, want %q", tc.code, tc.n, err, tc.want)
		}
	}
}
