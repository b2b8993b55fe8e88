package testdata

import "testing"

func TestEmitChildOutput(t *testing.T) {
	// Values from `printf 'child %d' I | sha256sum`.
	for i, want := range map[int]string{
		0:    "child 0 a9638f1ddbeb6bc0\n",
		7:    "child 7 db6e4c8fc3e971f6\n",
		1023: "child 1023 bb01d8306f0d9137\n",
	} {
		if got := EmitChildOutput(i); got != want {
			t.Errorf("EmitChildOutput(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestModulesEmbedded(t *testing.T) {
	for name, b := range map[string][]byte{"Primes": Primes, "Echo": Echo, "Work": Work, "Emit": Emit, "Count": Count} {
		if len(b) < 8 || string(b[:4]) != "\x00asm" {
			t.Errorf("%s is not a WebAssembly module (%d bytes)", name, len(b))
		}
	}
}

func TestCountOutput(t *testing.T) {
	// Values from an independent implementation (Python, arbitrary-precision
	// integers masked to 64 bits).
	for steps, want := range map[uint64]string{
		0: "0000000000000000\n",
		1: "723cc1865dd69690\n",
		2: "01d86a21f972f3fa\n",
		5: "a274f051afe00d5b\n",
	} {
		if got := CountOutput(steps); got != want {
			t.Errorf("CountOutput(%d) = %q, want %q", steps, got, want)
		}
	}
}
