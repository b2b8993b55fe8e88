package grid

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gridnode/gridnode/transport"
)

// sim is a cluster of in-process nodes on the in-memory network, inside a
// synctest bubble: time is virtual and exact.
type sim struct {
	t     *testing.T
	net   *transport.MemNetwork
	nodes map[string]*simNode
	mod   func(*Config)
}

type simNode struct {
	name   string
	inc    uint64
	srv    *transport.Server
	l      transport.Listener
	c      *Cluster
	served chan struct{}
}

func clusterSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("GRID_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (replay with GRID_SEED=%d)", seed, seed)
	return seed
}

func newSim(t *testing.T, seed int64, mod func(*Config)) *sim {
	s := &sim{t: t, net: transport.NewMemNetwork(seed), nodes: map[string]*simNode{}, mod: mod}
	t.Cleanup(func() {
		for _, n := range s.nodes {
			s.stop(n.name)
		}
	})
	return s
}

func (s *sim) logger(name string) *slog.Logger {
	if os.Getenv("GRID_SIM_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("sim", name)
	}
	return slog.New(slog.DiscardHandler)
}

// start starts node name on its own host, joining through the named nodes
// (none founds).
func (s *sim) start(name string, join ...string) *simNode {
	s.t.Helper()
	return s.startAt(name, name, join...)
}

// stop stops a node abruptly: to the others it is silence.
func (s *sim) stop(name string) {
	n := s.nodes[name]
	if n == nil || n.c == nil {
		return
	}
	n.c.Close()
	n.srv.Close()
	<-n.served
	n.c = nil
}

// kill cuts a node off first, so that the others hear silence rather than
// closed connections, then stops it.
func (s *sim) kill(name string) {
	var others []string
	for id := range s.nodes {
		if id != name {
			others = append(others, id)
		}
	}
	s.net.Partition([]string{name}, others)
	s.stop(name)
	s.net.Heal()
}

// waitFor advances virtual time until cond holds or limit passes.
func (s *sim) waitFor(limit time.Duration, what string, cond func() bool) time.Duration {
	s.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			s.t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// agreed reports whether every running node holds the same view of epoch
// at least minEpoch, in which pred holds.
func (s *sim) agreed(minEpoch uint64, pred func(View) bool) bool {
	var digest uint64
	first := true
	for _, n := range s.nodes {
		if n.c == nil {
			continue
		}
		v, _ := n.c.View()
		if v.Epoch < minEpoch || !pred(v) {
			return false
		}
		if first {
			digest, first = v.Digest(), false
		} else if v.Digest() != digest {
			return false
		}
	}
	return true
}

func stateOf(v View, id string) State {
	m, _ := v.Member(id)
	return m.State
}

func (s *sim) startCluster(n int) {
	s.start("n1")
	for i := 2; i <= n; i++ {
		s.start(fmt.Sprintf("n%d", i), "n1")
	}
	s.waitFor(30*time.Second, "all nodes joined with 3 monitors, each holding a quorum", func() bool {
		agreed := s.agreed(0, func(v View) bool {
			return len(v.Live()) == n && len(v.Monitors()) == DesiredMonitors(3, n)
		})
		if !agreed {
			return false
		}
		for _, nd := range s.nodes {
			if nd.c != nil && nd.c.Quorum() != nil {
				return false
			}
		}
		return true
	})
}

func TestClusterFormsAndDetectsDeath(t *testing.T) {
	seed := clusterSeed(t)
	synctest.Test(t, func(t *testing.T) {
		s := newSim(t, seed, nil)
		s.startCluster(5)
		v, _ := s.nodes["n1"].c.View()
		t.Logf("formed at epoch %d, monitors %v", v.Epoch, v.Monitors())
		for _, n := range s.nodes {
			if err := n.c.Quorum(); err != nil {
				t.Fatalf("%s: %v", n.name, err)
			}
		}
		victim := "n4"
		s.kill(victim)
		took := s.waitFor(5*time.Second, victim+" declared dead everywhere", func() bool {
			return s.agreed(v.Epoch+1, func(v View) bool { return stateOf(v, victim) == Dead })
		})
		t.Logf("death of %s agreed everywhere after %s", victim, took)
		if took > 2*time.Second {
			t.Errorf("detection took %s, want at most 2s", took)
		}
	})
}

func TestClusterScaleProbe(t *testing.T) {
	if os.Getenv("GRID_PROBE") == "" {
		t.Skip()
	}
	n, _ := strconv.Atoi(os.Getenv("GRID_PROBE"))
	seed := clusterSeed(t)
	synctest.Test(t, func(t *testing.T) {
		s := newSim(t, seed, nil)
		start := time.Now()
		s.startCluster(n)
		t.Logf("formed in %s virtual", time.Since(start))
		var sent0 int64
		for _, nd := range s.nodes {
			sent0 += nd.c.Status().HeartbeatsSent
		}
		time.Sleep(10 * time.Second)
		var sent1 int64
		for _, nd := range s.nodes {
			sent1 += nd.c.Status().HeartbeatsSent
		}
		t.Logf("%d nodes: %.1f heartbeats/node/s", n, float64(sent1-sent0)/float64(n)/10)
		v, _ := s.nodes["n1"].c.View()
		s.kill("n7")
		took := s.waitFor(10*time.Second, "n7 dead everywhere", func() bool {
			return s.agreed(v.Epoch+1, func(v View) bool { return stateOf(v, "n7") == Dead })
		})
		t.Logf("detection %s", took)
	})
}
