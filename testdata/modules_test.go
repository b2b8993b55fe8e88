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
	for name, b := range map[string][]byte{"Primes": Primes, "Echo": Echo, "Work": Work, "Emit": Emit} {
		if len(b) < 8 || string(b[:4]) != "\x00asm" {
			t.Errorf("%s is not a WebAssembly module (%d bytes)", name, len(b))
		}
	}
}
