package grid

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// The scale simulation: a large cluster on the in-memory network, in
// virtual time. It measures what a node pays for membership as the cluster
// grows (heartbeats sent per node per second, which the ring topology keeps
// flat beyond FullMeshLimit) and how long the detection of a crash takes
// until every live node agrees on it.
//
// By default (go test ./...) it runs 100 nodes against a 50-node baseline
// (a few seconds). The full 1000-node run is done on purpose, not in every
// test run: on a 2-core machine it takes about a minute of real time and
// 4.5 GB of memory:
//
//	GRID_SIM_NODES=1000 go test -run TestSimScale -v -timeout 30m ./grid/
func TestSimScale(t *testing.T) {
	big := 100
	if s := os.Getenv("GRID_SIM_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 20 {
			t.Fatalf("GRID_SIM_NODES=%q: want a number of nodes, at least 20", s)
		}
		big = n
	}
	base := runScale(t, 50)
	res := runScale(t, big)
	ratio := res.rate / base.rate
	t.Logf("heartbeats per node per second: %.1f with %d nodes, %.1f with %d nodes: ratio %.2f", res.rate, big, base.rate, 50, ratio)
	if ratio > 1.5 || ratio < 1/1.5 {
		t.Errorf("the per-node heartbeat rate with %d nodes is %.2f× the rate with 50 nodes; want within 1.5×", big, ratio)
	}
}

type scaleResult struct {
	rate float64 // heartbeats sent per node per second
}

func runScale(t *testing.T, n int) (res scaleResult) {
	t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) {
		seed := clusterSeed(t)
		realNow := wallClock(t)
		realSince := func(t0 time.Time) time.Duration { return realNow().Sub(t0).Round(time.Millisecond) }
		synctest.Test(t, func(t *testing.T) {
			s := newSim(t, seed, nil)
			real0, virt0 := realNow(), time.Now()
			s.startCluster(n) // all join at once, each join one epoch
			t.Logf("%d nodes formed: epoch %d after %s virtual, %s real", n, s.view("n1").Epoch, time.Since(virt0).Round(time.Millisecond), realSince(real0))

			// Let the detectors learn the steady gaps, then count.
			time.Sleep(2 * time.Second)
			const window = 5 * time.Second
			sent := func() (sum int64) {
				for _, name := range s.running() {
					sum += s.node(name).Status().HeartbeatsSent
				}
				return sum
			}
			real1 := realNow()
			before := sent()
			time.Sleep(window)
			res.rate = float64(sent()-before) / float64(n) / window.Seconds()
			t.Logf("%d nodes: %.1f heartbeats sent per node per second (%s real for %s virtual)", n, res.rate, realSince(real1), window)

			epoch := s.view("n1").Epoch
			victim := "n7"
			real2, start := realNow(), time.Now()
			s.crash(victim)
			s.waitFor(15*time.Second, victim+" dead in one view everywhere", func() bool {
				return s.agreed(epoch+1, allIn(Dead, victim))
			})
			t.Logf("%d nodes: crash of %s agreed by all %d live nodes after %s (%s real)", n, victim, n-1, time.Since(start), realSince(real2))
		})
	})
	return res
}

// wallClock returns a func that reads the real time, even inside a synctest
// bubble (where time.Now is virtual): a goroutine outside the bubble reads
// it, over channels made outside the bubble.
func wallClock(t *testing.T) func() time.Time {
	req, resp := make(chan struct{}), make(chan time.Time)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-req:
				resp <- time.Now()
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return func() time.Time {
		req <- struct{}{}
		return <-resp
	}
}
