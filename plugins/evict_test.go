package plugins

import (
	"context"
	"fmt"
	"testing"
)

// TestWorkerReloadsAnEvictedModule runs more distinct modules on one worker
// than it keeps compiled, then the first again: the worker has evicted it,
// says so (a loading frame) and loads it again, and the execution succeeds.
func TestWorkerReloadsAnEvictedModule(t *testing.T) {
	s, err := Open(context.Background(), Config{Dir: t.TempDir(), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	echo := readTestdata(t, "echo/echo.wasm")
	var mods []Hash
	for i := range maxWorkerModules + 2 {
		// A custom section makes a distinct module with the same code.
		name := fmt.Sprintf("v%02d", i)
		wasm := append(append([]byte(nil), echo...), 0, byte(2+len(name)), byte(len(name)))
		wasm = append(append(wasm, name...), 0) // section: id 0, size, name, one byte of payload
		h, err := s.AddModule(context.Background(), wasm)
		if err != nil {
			t.Fatal(err)
		}
		mods = append(mods, h)
	}
	run := func(h Hash, in string) {
		t.Helper()
		o := execute(t, s, Task{Module: h, ItemID: in, Input: []byte(in)})
		if o.Status != StatusOK || string(o.Stdout) != in {
			t.Fatalf("module %s: %s %q (%s)", h, o.Status, o.Stdout, o.Message)
		}
	}
	for i, h := range mods {
		run(h, fmt.Sprint("first ", i))
	}
	for i, h := range mods {
		run(h, fmt.Sprint("again ", i)) // some of these were evicted
	}
}
