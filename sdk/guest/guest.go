package guest

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Input returns all of the item's input (stdin). The input is consumed:
// call it once.
func Input() ([]byte, error) {
	return io.ReadAll(os.Stdin)
}

// Run reads the item's input, calls f with it and writes f's output to
// stdout. If reading, f or writing fails, Run writes the error to stderr
// and exits with status 1; otherwise it returns and main may return,
// which exits with status 0.
func Run(f func(input []byte) ([]byte, error)) {
	if code := run(os.Stdin, os.Stdout, os.Stderr, f); code != 0 {
		os.Exit(code)
	}
}

// run is Run with its streams injected; it returns the exit status.
func run(in io.Reader, out, log io.Writer, f func([]byte) ([]byte, error)) int {
	input, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(log, "guest: reading input: %v\n", err)
		return 1
	}
	output, err := f(input)
	if err != nil {
		fmt.Fprintf(log, "%v\n", err)
		return 1
	}
	if _, err := out.Write(output); err != nil {
		fmt.Fprintf(log, "guest: writing output: %v\n", err)
		return 1
	}
	return 0
}

// Progress reports the fraction of the item done, from 0 to 1, to the
// grid. Values outside that range are clamped and NaN is ignored. It is
// cheap, but the host may coalesce reports; call it at most every few
// milliseconds of work. Outside wasip1 it does nothing.
func Progress(fraction float64) {
	if f, ok := clampFraction(fraction); ok {
		progress(f)
	}
}

func clampFraction(f float64) (float64, bool) {
	switch {
	case math.IsNaN(f):
		return 0, false
	case f < 0:
		return 0, true
	case f > 1:
		return 1, true
	}
	return f, true
}

// Logf writes a line to the item's log (stderr), adding a newline if
// format does not end with one. The grid keeps a bounded tail of the log.
func Logf(format string, args ...any) {
	logf(os.Stderr, format, args...)
}

func logf(w io.Writer, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	io.WriteString(w, s)
}

// Args returns the job's arguments (the command line without the program
// name). It never returns nil.
func Args() []string {
	if len(os.Args) < 2 {
		return []string{}
	}
	return os.Args[1:]
}

// Env returns the value of the job's environment variable key, or "" if
// it is not set.
func Env(key string) string {
	return os.Getenv(key)
}
