package plugins

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestHostileSoak runs many hostile executions through one isolated Sandbox
// and checks that the node's heap returns near its baseline and echo still works.
// 200 by default (30 with -short); GRIDNODE_SOAK=1 runs 1,000 with more runaways.
func TestHostileSoak(t *testing.T) {
	n, recurseEvery := 200, 50
	if testing.Short() || raceEnabled {
		n = 30
	}
	if os.Getenv("GRIDNODE_SOAK") == "1" {
		n, recurseEvery = 1000, 20
	}
	s := openSandbox(t, Process, "")
	echo := addTestdata(t, s, "echo/echo.wasm")
	mods := map[string]Hash{}
	for _, f := range []string{"loop", "memhog", "trap", "divzero", "flood", "logflood", "recurse"} {
		mods[f] = addTestdata(t, s, "hostile/"+f+".wasm")
	}
	mix := []struct {
		name string
		want Status
	}{
		{"loop", StatusDeadline}, {"memhog", StatusMemory}, {"trap", StatusTrap}, {"divzero", StatusTrap},
		{"flood", StatusOutputTooLarge}, {"logflood", StatusDeadline},
	}
	lim := Limits{Deadline: 100 * time.Millisecond, MemoryBytes: 8 << 20, StdoutBytes: 256 << 10, StderrBytes: 8 << 10}
	checkEcho(t, s, echo) // warm the workers before the baseline
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base, baseG := heap(), runtime.NumGoroutine()

	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				name, want := mix[i%len(mix)].name, mix[i%len(mix)].want
				if i%recurseEvery == recurseEvery-1 {
					name, want = "recurse", StatusDeadline
				}
				l := lim
				if name == "memhog" || name == "flood" {
					// Filling 8 MiB of memory or 256 KiB of output is slow
					// under -race and on a loaded machine; these must hit
					// their limit, not the deadline.
					l.Deadline = 2 * time.Second
				}
				o := s.Execute(context.Background(), Task{Module: mods[name], ItemID: name, Limits: l})
				if o.Status != want {
					t.Errorf("#%d %s: %s (%s), want %s", i, name, o.Status, o.Message, want)
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	el := time.Since(start)
	checkEcho(t, s, echo)
	s.pool.bg.Wait() // replacement workers have started or failed
	after, afterG := heap(), runtime.NumGoroutine()
	t.Logf("%d hostile executions in %v; node heap %d KiB → %d KiB; goroutines %d → %d", n, el, base>>10, after>>10, baseG, afterG)
	if after > base+16<<20 {
		t.Errorf("node heap grew from %d KiB to %d KiB over %d hostile executions", base>>10, after>>10, n)
	}
	if afterG > baseG+3*s.cfg.Workers+2 { // 3 per idle worker: reaper, reader, stderr copier
		t.Errorf("goroutines grew from %d to %d", baseG, afterG)
	}
}
