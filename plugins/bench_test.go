package plugins

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchModule is one workload: a module and one input.
type benchModule struct {
	name  string
	wasm  []byte
	input []byte
}

func benchModules(b *testing.B) []benchModule {
	var mods []benchModule
	if w, err := os.ReadFile(filepath.Join("..", "testdata", "echo", "echo.wasm")); err == nil {
		mods = append(mods, benchModule{"echo", w, []byte("hello grid")})
	}
	if w, err := os.ReadFile(filepath.Join("..", "testdata", "primes", "primes.wasm")); err == nil {
		mods = append(mods, benchModule{"primes", w, []byte("1 20000")})
	} else {
		b.Logf("primes.wasm not built yet; skipping its benchmarks")
	}
	if w, err := os.ReadFile(filepath.Join("..", "testdata", "work", "work.wasm")); err == nil {
		mods = append(mods, benchModule{"work1ms", w, []byte(strconv.Itoa(calibrateWork(b, w)))})
	}
	return mods
}

// calibrateWork finds the work.wasm input that takes about 1 ms on plain wazero here.
func calibrateWork(b *testing.B, wasm []byte) int {
	ctx := context.Background()
	r, err := NewRaw(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(ctx)
	n := 10000
	for range 20 {
		start := time.Now()
		if _, err := r.Run(ctx, []byte(strconv.Itoa(n))); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		if el > 900*time.Microsecond && el < 1100*time.Microsecond {
			break
		}
		n = int(float64(n) * float64(time.Millisecond) / float64(max(el, time.Microsecond)))
	}
	return n
}

func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	mods := benchModules(b)
	b.Run("raw", func(b *testing.B) {
		for _, m := range mods {
			b.Run(m.name, func(b *testing.B) {
				r, err := NewRaw(ctx, m.wasm)
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close(ctx)
				for b.Loop() {
					if _, err := r.Run(ctx, m.input); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	for _, iso := range []struct {
		name string
		iso  Isolation
	}{{"inprocess", InProcess}, {"isolated", Process}} {
		b.Run(iso.name, func(b *testing.B) {
			s, err := Open(ctx, Config{Dir: b.TempDir(), Isolation: iso.iso, Workers: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for _, m := range mods {
				b.Run(m.name, func(b *testing.B) {
					h, err := s.AddModule(ctx, m.wasm)
					if err != nil {
						b.Fatal(err)
					}
					task := Task{Module: h, ItemID: "bench", Input: m.input}
					if o := s.Execute(ctx, task); o.Status != StatusOK { // warm: worker start, compile
						b.Fatalf("%s: %s", o.Status, o.Message)
					}
					for b.Loop() {
						if o := s.Execute(ctx, task); o.Status != StatusOK {
							b.Fatalf("%s: %s", o.Status, o.Message)
						}
					}
				})
			}
		})
	}
}
