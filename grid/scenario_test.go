package grid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gridnode/gridnode/transport"
)

// Protocol scenarios: each one builds a cluster in a synctest bubble on the
// in-memory network, breaks something, and checks what the members agree
// on and when. Times are virtual and exact; the seed (printed) replays the
// network's random choices.
//
//	GRID_SEED=n      replay a seed
//	GRID_SIM_LOG=1   every node's debug log on stderr
//	GRID_SIM_LONG=1  run the slow-link and loss scenarios 10× longer

// ---- harness extensions ----

// hostOf is the host node name runs (or last ran) on: its address without
// the port. A node that moved keeps its ID but not its host.
func (s *sim) hostOf(name string) string {
	if n := s.nodes[name]; n != nil {
		h, _, _ := strings.Cut(n.l.Addr(), ":")
		return h
	}
	return name
}

// startAt starts node name on host (its address is host:7000) with the
// next incarnation, joining through the named nodes, wherever they run.
// The node must not be running.
func (s *sim) startAt(name, host string, join ...string) *simNode {
	s.t.Helper()
	prev := s.nodes[name]
	inc := uint64(1)
	if prev != nil {
		if prev.c != nil {
			s.t.Fatalf("start %s on %s: it still runs", name, host)
		}
		inc = prev.inc + 1
	}
	hn := s.net.Host(host, transport.Peer{Role: transport.RoleNode, ID: name})
	l, err := hn.Listen(host + ":7000")
	if err != nil {
		s.t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerConfig{})
	n := &simNode{name: name, inc: inc, srv: srv, l: l, served: make(chan struct{})}
	var addrs []string
	for _, j := range join {
		addrs = append(addrs, s.hostOf(j)+":7000")
	}
	cfg := Config{
		Self:    Member{NodeID: name, Incarnation: inc, Addr: l.Addr(), Slots: 4},
		Join:    addrs,
		Network: hn, Server: srv, Logger: s.logger(name),
		Raft: RaftConfig{InMemory: true},
		Seed: uint64(len(s.nodes) + 1),
	}
	if s.mod != nil {
		s.mod(&cfg)
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	n.c = c
	go func() { defer close(n.served); srv.Serve(context.Background(), l) }()
	s.nodes[name] = n
	return n
}

// halt stops node name like stop, remembering the incarnation it ran
// under last (it grows when a node rejoins after being declared dead), so
// that a restart starts above it.
func (s *sim) halt(name string) {
	n := s.nodes[name]
	if n == nil || n.c == nil {
		return
	}
	n.inc = n.c.Self().Incarnation
	s.stop(name)
}

// crash is kill for any set of nodes wherever they run: the victims are
// cut off from everyone at once (so the others hear silence, not closed
// connections), stopped, and the cut healed. No partition may be in force.
func (s *sim) crash(victims ...string) {
	var in, out []string
	for name := range s.nodes {
		if slices.Contains(victims, name) {
			in = append(in, s.hostOf(name))
		} else {
			out = append(out, s.hostOf(name))
		}
	}
	s.net.Partition(in, out)
	for _, v := range victims {
		s.halt(v)
	}
	s.net.Heal()
}

// split partitions the network between groups of node names.
func (s *sim) split(groups ...[]string) {
	var hg [][]string
	for _, g := range groups {
		var hs []string
		for _, name := range g {
			hs = append(hs, s.hostOf(name))
		}
		hg = append(hg, hs)
	}
	s.net.Partition(hg...)
}

// running lists the running nodes' names, sorted.
func (s *sim) running() []string {
	var out []string
	for name, n := range s.nodes {
		if n.c != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// node returns running node name's cluster.
func (s *sim) node(name string) *Cluster {
	s.t.Helper()
	n := s.nodes[name]
	if n == nil || n.c == nil {
		s.t.Fatalf("%s is not running", name)
	}
	return n.c
}

func (s *sim) view(name string) View {
	v, _ := s.node(name).View()
	return v
}

// leaderAmong returns the node among names that leads the monitors, or "".
func (s *sim) leaderAmong(names []string) string {
	for _, name := range names {
		if n := s.nodes[name]; n != nil && n.c != nil && n.c.mon.isLeader() {
			return name
		}
	}
	return ""
}

// roles returns the leader, the other monitors and the plain members of
// node name's view, each in node ID order.
func (s *sim) roles(name string) (leader string, followers, plain []string) {
	leader = s.leaderAmong(s.running())
	for _, m := range s.view(name).Live() {
		switch {
		case m.NodeID == leader:
		case m.Monitor:
			followers = append(followers, m.NodeID)
		default:
			plain = append(plain, m.NodeID)
		}
	}
	return leader, followers, plain
}

// agreedAmong is agreed for the named nodes only.
func (s *sim) agreedAmong(names []string, pred func(View) bool) bool {
	var digest uint64
	for i, name := range names {
		v := s.view(name)
		if !pred(v) {
			return false
		}
		if i == 0 {
			digest = v.Digest()
		} else if v.Digest() != digest {
			return false
		}
	}
	return true
}

// settle waits until every running node agrees on one view with the
// monitors it should have, holds a quorum and names the same leader, and
// the consensus runs on exactly those monitors.
func (s *sim) settle(limit time.Duration) {
	s.t.Helper()
	s.waitFor(limit, "the cluster settles (one view, full monitor set, quorum everywhere)", func() bool {
		if !s.agreed(0, func(v View) bool {
			return len(v.Monitors()) == DesiredMonitors(3, len(v.Live())) && s.leaderAmong(s.running()) != ""
		}) {
			return false
		}
		leader := s.leaderAmong(s.running())
		for _, name := range s.running() {
			if st := s.node(name).Status(); st.Quorum != nil || st.Leader != leader {
				return false
			}
		}
		return s.consensusWhole()
	})
}

// consensusWhole reports whether the leader's consensus configuration is
// exactly the view's monitors at their addresses, and each of them runs a
// consensus peer that knows the leader.
func (s *sim) consensusWhole() bool {
	leader := s.leaderAmong(s.running())
	if leader == "" {
		return false
	}
	servers, err := s.node(leader).mon.voters()
	if err != nil {
		return false
	}
	mons := s.view(leader).Monitors()
	if len(servers) != len(mons) {
		return false
	}
	for _, m := range mons {
		if !slices.ContainsFunc(servers, func(sv raftServer) bool {
			return string(sv.ID) == m.NodeID && string(sv.Address) == m.Addr && sv.Suffrage == 0 // raft.Voter
		}) {
			return false
		}
		n := s.nodes[m.NodeID]
		if n == nil || n.c == nil {
			return false
		}
		if id, _ := n.c.mon.leader(); id != leader {
			return false
		}
	}
	return true
}

func allAlive(names ...string) func(View) bool {
	return func(v View) bool {
		for _, n := range names {
			if stateOf(v, n) != Alive {
				return false
			}
		}
		return true
	}
}

func allIn(st State, names ...string) func(View) bool {
	return func(v View) bool {
		for _, n := range names {
			if stateOf(v, n) != st {
				return false
			}
		}
		return true
	}
}

// viewLog records, per node, every view its View() change channel showed
// it (views installed in quick succession may be seen once, as the last).
type viewLog struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen map[string][]View
}

// recordViews starts recording the views of the running nodes; watch adds
// nodes started later. Recording stops at the end of the test.
func (s *sim) recordViews() *viewLog {
	lg := &viewLog{done: make(chan struct{}), seen: map[string][]View{}}
	s.t.Cleanup(func() {
		close(lg.done)
		lg.wg.Wait()
	})
	for _, name := range s.running() {
		lg.watch(name, s.node(name))
	}
	return lg
}

func (lg *viewLog) watch(name string, c *Cluster) {
	lg.wg.Go(func() {
		for {
			v, ch := c.View()
			lg.mu.Lock()
			seq := lg.seen[name]
			if len(seq) == 0 || seq[len(seq)-1].Epoch != v.Epoch || seq[len(seq)-1].Digest() != v.Digest() {
				lg.seen[name] = append(seq, v.Clone())
			}
			lg.mu.Unlock()
			select {
			case <-ch:
			case <-lg.done:
				return
			}
		}
	})
}

// epochs returns the epochs node name saw, in order.
func (lg *viewLog) epochs(name string) []uint64 {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var out []uint64
	for _, v := range lg.seen[name] {
		out = append(out, v.Epoch)
	}
	return out
}

// checkEpochsGrow fails the test unless every recorded node saw its epochs
// strictly increase.
func (lg *viewLog) checkEpochsGrow(t *testing.T) {
	t.Helper()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for name, seq := range lg.seen {
		for i := 1; i < len(seq); i++ {
			if seq[i].Epoch <= seq[i-1].Epoch {
				t.Errorf("%s: epoch went from %d to %d", name, seq[i-1].Epoch, seq[i].Epoch)
			}
		}
	}
}

// everIn reports which nodes ever saw node id in state st, and at which
// epoch first.
func (lg *viewLog) everIn(id string, st State) map[string]uint64 {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	out := map[string]uint64{}
	for name, seq := range lg.seen {
		for _, v := range seq {
			if stateOf(v, id) == st {
				out[name] = v.Epoch
				break
			}
		}
	}
	return out
}

// deaths lists "id#inc" of every member any node ever saw dead.
func (lg *viewLog) deaths() []string {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var out []string
	for _, seq := range lg.seen {
		for _, v := range seq {
			for _, m := range v.Members {
				if m.State == Dead {
					if k := fmt.Sprintf("%s#%d", m.NodeID, m.Incarnation); !slices.Contains(out, k) {
						out = append(out, k)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// holdFor advances virtual time by d, failing at once if check fails.
func (s *sim) holdFor(d time.Duration, what string, check func() error) {
	s.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := check(); err != nil {
			s.t.Fatalf("after %s of %s: %s: %v", d-time.Until(end), d, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noChange returns a check that the running nodes all stay at epoch.
func (s *sim) noChange(epoch uint64) func() error {
	return func() error {
		for _, name := range s.running() {
			if v := s.view(name); v.Epoch != epoch {
				return fmt.Errorf("%s moved to epoch %d: %v", name, v.Epoch, v.Members)
			}
		}
		return nil
	}
}

// soak is d, or ten times d with GRID_SIM_LONG set.
func soak(d time.Duration) time.Duration {
	if os.Getenv("GRID_SIM_LONG") != "" {
		return 10 * d
	}
	return d
}

func inSim(t *testing.T, f func(t *testing.T, s *sim)) {
	seed := clusterSeed(t)
	synctest.Test(t, func(t *testing.T) { f(t, newSim(t, seed, nil)) })
}

// ---- 1. kill -9 ----

// A crashed member, monitor or monitors' leader is declared dead and every
// live node agrees on it within 2 s (2.5 s for the leader, whose death
// needs an election first); the monitor set is whole again afterwards.
func TestScenarioKill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pick  func(leader string, followers, plain []string) string
		limit time.Duration
	}{
		{"member", func(_ string, _, plain []string) string { return plain[0] }, 2 * time.Second},
		{"monitor", func(_ string, followers, _ []string) string { return followers[0] }, 2 * time.Second},
		{"leader", func(leader string, _, _ []string) string { return leader }, 2500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				victim := tc.pick(s.roles("n1"))
				survivors := slices.DeleteFunc(s.running(), func(n string) bool { return n == victim })
				before := s.view(survivors[0]).Epoch
				start := time.Now()
				s.crash(victim)
				s.waitFor(10*time.Second, victim+" dead in one view everywhere", func() bool {
					return s.agreed(before+1, allIn(Dead, victim))
				})
				took := time.Since(start)
				t.Logf("%s %s killed: dead in one view on all %d survivors after %s", tc.name, victim, len(survivors), took)
				if took > tc.limit {
					t.Errorf("agreement on the death of %s took %s, want at most %s", victim, took, tc.limit)
				}
				s.settle(10 * time.Second)
				v := s.view(survivors[0])
				if len(v.Monitors()) != 3 || !allAlive(survivors...)(v) {
					t.Errorf("after the death: %d monitors, members %v", len(v.Monitors()), v.Members)
				}
				t.Logf("monitor set whole again after %s: %v", time.Since(start), monitorIDs(v))
			})
		})
	}
}

func monitorIDs(v View) []string {
	var out []string
	for _, m := range v.Monitors() {
		out = append(out, m.NodeID)
	}
	return out
}

// without returns names minus the excluded ones.
func without(names []string, excl ...string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return slices.Contains(excl, n) })
}

// ---- 2. pause (SIGSTOP) longer than the death timeout ----

// A node cut off for longer than the death timeout is declared dead; once
// it can speak again it learns so, rejoins under a new incarnation and the
// cluster takes it back.
func TestScenarioPause(t *testing.T) {
	for _, role := range []string{"member", "leader"} {
		t.Run(role, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				leader, _, plain := s.roles("n1")
				p := plain[0]
				if role == "leader" {
					p = leader
				}
				others := without(s.running(), p)
				lg := s.recordViews()
				inc := s.node(p).Self().Incarnation

				start := time.Now()
				s.split([]string{p}, others)
				took := s.waitFor(10*time.Second, p+" dead among the others", func() bool {
					return s.agreedAmong(others, allIn(Dead, p))
				})
				t.Logf("%s %s paused: dead among the others after %s", role, p, took)
				// As for a crash: a leader that is cut off (not closed) must
				// not hold the reports about it back either.
				if limit := map[string]time.Duration{"member": 2 * time.Second, "leader": 2500 * time.Millisecond}[role]; took > limit {
					t.Errorf("agreement on the death of %s took %s, want at most %s", p, took, limit)
				}
				if st := s.node(p).Status(); st.Undead != 0 || stateOf(s.view(p), p) != Alive {
					t.Fatalf("%s learnt of its death while cut off: undead %d, its view %v", p, st.Undead, s.view(p).Members)
				}
				time.Sleep(5*time.Second - time.Since(start)) // the pause lasts 5 s
				if err := s.node(p).Quorum(); !errors.Is(err, ErrNoQuorum) {
					t.Errorf("%s after a 5 s pause: Quorum() = %v, want ErrNoQuorum", p, err)
				}

				s.net.Heal()
				healed := time.Now()
				s.waitFor(10*time.Second, p+" back alive at a higher incarnation in one view everywhere", func() bool {
					return s.agreed(0, func(v View) bool {
						m, _ := v.Member(p)
						return m.State == Alive && m.Incarnation > inc
					})
				})
				t.Logf("%s back alive everywhere %s after the heal", p, time.Since(healed))
				s.settle(10 * time.Second)
				st := s.node(p).Status()
				m, _ := s.view(p).Member(p)
				if st.Undead != 1 || st.Incarnation != inc+1 || m.Incarnation != inc+1 {
					t.Errorf("%s: undead %d, incarnation %d (view #%d), want undead 1, incarnation %d", p, st.Undead, st.Incarnation, m.Incarnation, inc+1)
				}
				if d := lg.deaths(); !slices.Equal(d, []string{fmt.Sprintf("%s#%d", p, inc)}) {
					t.Errorf("deaths seen: %v, want only %s#%d", d, p, inc)
				}
				lg.checkEpochsGrow(t)
				s.waitMonitorRoles(15 * time.Second)
			})
		})
	}
}

// waitMonitorRoles waits until exactly the view's monitors run a consensus
// peer: a monitor voted out while cut off must stop its own once back,
// not campaign with an old configuration for ever.
func (s *sim) waitMonitorRoles(limit time.Duration) {
	s.t.Helper()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		var bad []string
		for _, n := range s.running() {
			m, _ := s.view(n).Member(n)
			if runs := s.node(n).mon.raft() != nil; runs != m.Monitor {
				bad = append(bad, fmt.Sprintf("%s (a monitor: %v, runs a consensus peer: %v)", n, m.Monitor, runs))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Since(start) > limit {
			s.t.Fatalf("after %s, consensus peers do not match the monitors: %v", limit, bad)
		}
	}
}

// ---- 3. short pause ----

// A pause shorter than the detector's timeout (150 ms), or one that only
// makes the node suspect (350 ms, under twice the 300 ms minimum timeout),
// changes nothing.
func TestScenarioShortPause(t *testing.T) {
	for _, pause := range []time.Duration{150 * time.Millisecond, 350 * time.Millisecond} {
		t.Run(pause.String(), func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				_, followers, _ := s.roles("n1")
				p := followers[0] // a monitor: its raft stalls too
				epoch := s.view("n1").Epoch
				suspicions := int64(0)
				for _, n := range s.running() {
					suspicions -= s.node(n).Status().Suspicions
				}
				s.split([]string{p}, without(s.running(), p))
				time.Sleep(pause)
				s.net.Heal()
				s.holdFor(10*time.Second, "after a short pause", s.noChange(epoch))
				for _, n := range s.running() {
					suspicions += s.node(n).Status().Suspicions
				}
				t.Logf("%s paused %s: epoch stayed %d, %d suspicions", p, pause, epoch, suspicions)
			})
		})
	}
}

// ---- 4. slow link ----

// 50 ms more on every link to and from the monitors' leader, for a minute:
// no false death, and quorum holds throughout.
func TestScenarioSlowLink(t *testing.T) {
	inSim(t, func(t *testing.T, s *sim) {
		s.startCluster(5)
		s.settle(10 * time.Second)
		slow := s.leaderAmong(s.running())
		for _, n := range without(s.running(), slow) {
			s.net.SetDelay(s.hostOf(slow), s.hostOf(n), 50*time.Millisecond)
			s.net.SetDelay(s.hostOf(n), s.hostOf(slow), 50*time.Millisecond)
		}
		epoch := s.view("n1").Epoch
		d := soak(60 * time.Second)
		s.holdFor(d, "with a slow link to the leader "+slow, func() error {
			if err := s.noChange(epoch)(); err != nil {
				return err
			}
			for _, n := range s.running() {
				if err := s.node(n).Quorum(); err != nil {
					return fmt.Errorf("%s: %w", n, err)
				}
			}
			return nil
		})
		t.Logf("%s with 50 ms each way to and from %s: epoch stayed %d, quorum held", d, slow, epoch)
	})
}

// ---- 5. one-way loss ----

// 30% of the datagrams from one node to all others lost for a minute: no
// false death.
func TestScenarioOneWayLoss(t *testing.T) {
	inSim(t, func(t *testing.T, s *sim) {
		s.startCluster(5)
		s.settle(10 * time.Second)
		_, _, plain := s.roles("n1")
		a := plain[0]
		for _, n := range without(s.running(), a) {
			s.net.SetLoss(s.hostOf(a), s.hostOf(n), 0.3)
		}
		epoch := s.view("n1").Epoch
		drops := s.net.DroppedDatagrams()
		d := soak(60 * time.Second)
		s.holdFor(d, "with 30% loss from "+a, s.noChange(epoch))
		t.Logf("%s with 30%% loss from %s: %d datagrams dropped, epoch stayed %d", d, a, s.net.DroppedDatagrams()-drops, epoch)
	})
}

// All datagrams from A to B lost (B never hears A, the others do): B
// reports A, but B alone is no majority of A's observers, so A lives.
func TestScenarioOneWayCut(t *testing.T) {
	inSim(t, func(t *testing.T, s *sim) {
		s.startCluster(5)
		s.settle(10 * time.Second)
		leader, _, plain := s.roles("n1")
		a, b := plain[0], leader // B leads: its own report counts at once
		s.net.SetLoss(s.hostOf(a), s.hostOf(b), 1)
		epoch := s.view("n1").Epoch
		s.holdFor(30*time.Second, b+" never hears "+a, s.noChange(epoch))
		var st MemberStatus
		for _, m := range s.node(b).Status().Members {
			if m.NodeID == a {
				st = m
			}
		}
		if !st.Suspect || st.Heard < 29*time.Second {
			t.Errorf("%s's status of %s: suspect %v, heard %s ago; the cut did not bite", b, a, st.Suspect, st.Heard)
		}
		c := s.node(b)
		c.mu.Lock()
		rs := c.mu.reports[a]
		var from []string
		if rs != nil {
			for f := range rs.from {
				from = append(from, f)
			}
		}
		c.mu.Unlock()
		t.Logf("30 s with %s→%s cut: %s suspect at %s, reports at the leader from %v; epoch stayed %d", a, b, a, b, from, epoch)
		if !slices.Equal(from, []string{b}) {
			t.Errorf("reports of %s at the leader from %v, want only from %s", a, from, b)
		}
	})
}

// ---- 6. random loss everywhere ----

// 10% loss on every link for two minutes among five nodes: nobody dies.
func TestScenarioRandomLoss(t *testing.T) {
	inSim(t, func(t *testing.T, s *sim) {
		s.startCluster(5)
		s.settle(10 * time.Second)
		for _, a := range s.running() {
			for _, b := range s.running() {
				if a != b {
					s.net.SetLoss(s.hostOf(a), s.hostOf(b), 0.1)
				}
			}
		}
		lg := s.recordViews()
		epoch := s.view("n1").Epoch
		drops := s.net.DroppedDatagrams()
		suspicions := int64(0)
		for _, n := range s.running() {
			suspicions -= s.node(n).Status().Suspicions
		}
		d := soak(120 * time.Second)
		s.holdFor(d, "with 10% loss everywhere", s.noChange(epoch))
		for _, n := range s.running() {
			suspicions += s.node(n).Status().Suspicions
		}
		if d := lg.deaths(); len(d) > 0 {
			t.Errorf("deaths: %v", d)
		}
		t.Logf("%s with 10%% loss on every link: %d datagrams dropped, %d suspicions, 0 deaths, epoch stayed %d", d, s.net.DroppedDatagrams()-drops, suspicions, epoch)
	})
}

// ---- 7. 2|3 split ----

// Five nodes split 3|2, with the leader on either side. The majority keeps
// (or elects) a leader and its quorum throughout, and declares the
// minority dead; the minority loses its quorum within LeaseTimeout + 1 s.
// After the heal the minority rejoins under new incarnations and all five
// agree on one view; every node saw its epochs only grow.
func TestScenarioSplit(t *testing.T) {
	for _, leaderSide := range []string{"majority", "minority"} {
		t.Run("leader-in-"+leaderSide, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				leader, followers, plain := s.roles("n1")
				var maj, mnr []string
				if leaderSide == "majority" {
					maj, mnr = []string{leader, followers[0], plain[0]}, []string{followers[1], plain[1]}
				} else {
					maj, mnr = []string{followers[0], followers[1], plain[0]}, []string{leader, plain[1]}
				}
				slices.Sort(maj)
				slices.Sort(mnr)
				incs := map[string]uint64{}
				for _, n := range mnr {
					incs[n] = s.node(n).Self().Incarnation
				}
				lease := s.node("n1").cfg.LeaseTimeout
				lg := s.recordViews()

				start := time.Now()
				s.split(maj, mnr)
				lost := map[string]time.Duration{}
				var deadAt, newLeaderAt time.Duration
				s.holdFor(15*time.Second, "majority "+strings.Join(maj, ",")+" | minority "+strings.Join(mnr, ","), func() error {
					for _, n := range maj {
						if err := s.node(n).Quorum(); err != nil {
							return fmt.Errorf("majority node %s: %w", n, err)
						}
					}
					for _, n := range mnr {
						if _, ok := lost[n]; !ok && errors.Is(s.node(n).Quorum(), ErrNoQuorum) {
							lost[n] = time.Since(start)
						}
					}
					if newLeaderAt == 0 && s.leaderAmong(maj) != "" {
						newLeaderAt = time.Since(start)
					}
					if deadAt == 0 && s.agreedAmong(maj, allIn(Dead, mnr...)) {
						deadAt = time.Since(start)
					}
					return nil
				})
				t.Logf("split %v | %v (leader %s): majority leader from %s, minority dead on the majority after %s, minority lost quorum after %v",
					maj, mnr, leader, newLeaderAt, deadAt, lost)
				for _, n := range mnr {
					if d, ok := lost[n]; !ok || d > lease+time.Second {
						t.Errorf("minority node %s lost its quorum after %s (0: never), want at most %s", n, d, lease+time.Second)
					}
					if err := s.node(n).Quorum(); !errors.Is(err, ErrNoQuorum) {
						t.Errorf("minority node %s regained quorum while cut off: %v", n, err)
					}
				}
				if deadAt == 0 {
					t.Fatalf("the majority did not declare %v dead in 15 s", mnr)
				}
				if v := s.view(maj[0]); len(v.Monitors()) != 3 {
					t.Errorf("majority's monitors after the split: %v", monitorIDs(v))
				}

				s.net.Heal()
				healed := time.Now()
				s.waitFor(20*time.Second, "all five alive in one view", func() bool {
					return s.agreed(0, func(v View) bool {
						for _, n := range mnr {
							if m, _ := v.Member(n); m.State != Alive || m.Incarnation <= incs[n] {
								return false
							}
						}
						return len(v.Live()) == 5
					})
				})
				t.Logf("after the heal: one view with all five alive after %s", time.Since(healed))
				s.settle(10 * time.Second)
				s.waitMonitorRoles(15 * time.Second)
				for _, n := range mnr {
					if st := s.node(n).Status(); st.Undead != 1 {
						t.Errorf("%s: undead %d, want 1", n, st.Undead)
					}
				}
				lg.checkEpochsGrow(t)
				for _, n := range s.running() {
					t.Logf("%s saw epochs %v", n, lg.epochs(n))
				}
			})
		})
	}
}

// ---- 8. graceful leave ----

// A member, a monitor or the leader leaves: everyone records it as left,
// not dead, within 500 ms of the call, the monitor set is whole again from
// the live members, and nobody ever holds it dead.
func TestScenarioLeave(t *testing.T) {
	for _, tc := range []struct {
		name string
		pick func(leader string, followers, plain []string) string
	}{
		{"member", func(_ string, _, plain []string) string { return plain[0] }},
		{"monitor", func(_ string, followers, _ []string) string { return followers[0] }},
		{"leader", func(leader string, _, _ []string) string { return leader }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				leaver := tc.pick(s.roles("n1"))
				others := without(s.running(), leaver)
				lg := s.recordViews()
				suspicions := int64(0)
				for _, n := range others {
					suspicions -= s.node(n).Status().Suspicions
				}

				start := time.Now()
				var leaveErr error
				var leaveTook time.Duration
				done := make(chan struct{})
				go func() {
					defer close(done)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					leaveErr = s.node(leaver).Leave(ctx)
					leaveTook = time.Since(start)
				}()
				took := s.waitFor(5*time.Second, leaver+" left in one view among the others", func() bool {
					return s.agreedAmong(others, allIn(Left, leaver))
				})
				<-done
				if leaveErr != nil {
					t.Fatalf("Leave: %v", leaveErr)
				}
				t.Logf("%s %s left: recorded by all others after %s; Leave returned after %s", tc.name, leaver, took, leaveTook)
				if took > 500*time.Millisecond {
					t.Errorf("the others recorded the leave after %s, want at most 500ms", took)
				}
				if err := s.node(leaver).Quorum(); !errors.Is(err, ErrNoQuorum) {
					t.Errorf("the leaver's Quorum() = %v, want ErrNoQuorum", err)
				}
				s.halt(leaver)
				s.settle(10 * time.Second)
				time.Sleep(5 * time.Second) // well past any death timeout
				v := s.view(others[0])
				if mons := monitorIDs(v); len(mons) != 3 || slices.Contains(mons, leaver) || !s.agreed(0, allIn(Left, leaver)) {
					t.Errorf("after the leave: monitors %v, members %v", mons, v.Members)
				}
				if dead := lg.everIn(leaver, Dead); len(dead) > 0 {
					t.Errorf("nodes that held the leaver %s dead: %v", leaver, dead)
				}
				for _, n := range others {
					suspicions += s.node(n).Status().Suspicions
				}
				if suspicions != 0 {
					t.Errorf("%d suspicions among the others during a graceful leave", suspicions)
				}
				t.Logf("monitors afterwards %v, %d suspicions", monitorIDs(v), suspicions)
				lg.checkEpochsGrow(t)
			})
		})
	}
}

// ---- 9. rejoin with the same node ID at a new address ----

// A node is replaced by a new machine with the same node ID: stopped, and
// started on another host under the next incarnation. The view shows one
// member with that ID, alive at the new address and incarnation. A monitor
// so replaced must still vote: with it, the cluster survives losing one of
// the other two monitors.
func TestScenarioRejoinNewAddress(t *testing.T) {
	for _, role := range []string{"member", "monitor"} {
		t.Run(role, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(5)
				s.settle(10 * time.Second)
				_, followers, plain := s.roles("n1")
				id := plain[0]
				if role == "monitor" {
					id = followers[0]
				}
				inc := s.node(id).Self().Incarnation
				epoch := s.view("n1").Epoch
				if id == "n1" {
					t.Fatal("pick another node to join through")
				}
				s.halt(id)
				s.startAt(id, id+"b", "n1")
				took := s.waitFor(10*time.Second, id+" alive at "+id+"b in one view", func() bool {
					return s.agreed(epoch+1, func(v View) bool {
						m, _ := v.Member(id)
						return m.State == Alive && m.Addr == id+"b:7000" && m.Incarnation == inc+1 && len(v.Members) == 5
					})
				})
				t.Logf("%s %s back at %sb:7000 as #%d: agreed everywhere after %s", role, id, id, inc+1, took)
				s.settle(10 * time.Second)
				v := s.view("n1")
				if len(v.Live()) != 5 || len(v.Monitors()) != 3 {
					t.Errorf("view after the rejoin: %v", v.Members)
				}
				// The monitor set must really work: lose one other monitor.
				leader, followers, _ := s.roles("n1")
				other := leader
				if other == id {
					other = followers[0]
				}
				if m, _ := v.Member(id); m.Monitor {
					if s.node(id).mon.raft() == nil {
						t.Errorf("%s is a monitor in the view but runs no consensus peer", id)
					}
					epoch := s.view(id).Epoch
					s.crash(other)
					s.waitFor(10*time.Second, "the death of monitor "+other+" committed with "+id+" voting", func() bool {
						return s.agreed(epoch+1, allIn(Dead, other))
					})
				}
			})
		})
	}
}

// ---- 10. crisis: several deaths at once ----

// Several nodes crash at once. Victims are chosen so that a majority of the
// monitors survives: then every victim is declared dead (in a crisis the
// verdicts wait longer) and the survivors keep their quorum. When the
// victims are two of the three monitors, the survivors cannot commit
// anything: they must say so (ErrNoQuorum within LeaseTimeout + 1 s) and
// declare nobody dead.
func TestScenarioCrisis(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nodes  int
		pick   func(leader string, followers, plain []string) []string
		quorum bool
	}{
		// 2 of 5: one monitor and one member; 2 of 3 monitors live on.
		{"2of5", 5, func(_ string, f, p []string) []string { return []string{f[0], p[0]} }, true},
		// 3 of 7: each survivor sees 3 of its 6 peers fall silent, a crisis.
		{"3of7", 7, func(l string, _, p []string) []string { return []string{l, p[0], p[1]} }, true},
		// 2 of 5, both monitors besides the leader: no majority is left.
		{"2monitors", 5, func(_ string, f, _ []string) []string { return f }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inSim(t, func(t *testing.T, s *sim) {
				s.startCluster(tc.nodes)
				s.settle(10 * time.Second)
				victims := tc.pick(s.roles("n1"))
				survivors := without(s.running(), victims...)
				epoch := s.view(survivors[0]).Epoch
				lease := s.node("n1").cfg.LeaseTimeout
				start := time.Now()
				s.crash(victims...)
				if !tc.quorum {
					s.waitFor(lease+time.Second, "no quorum on every survivor", func() bool {
						for _, n := range survivors {
							if !errors.Is(s.node(n).Quorum(), ErrNoQuorum) {
								return false
							}
						}
						return true
					})
					t.Logf("%v killed: all survivors say no quorum after %s: %v", victims, time.Since(start), s.node(survivors[0]).Quorum())
					s.holdFor(10*time.Second, "without a monitors' majority", s.noChange(epoch))
					return
				}
				first := map[string]time.Duration{}
				s.waitFor(15*time.Second, fmt.Sprintf("%v dead in one view everywhere", victims), func() bool {
					for _, v := range victims {
						if _, ok := first[v]; !ok && s.agreed(epoch+1, allIn(Dead, v)) {
							first[v] = time.Since(start)
						}
					}
					return s.agreed(epoch+1, allIn(Dead, victims...))
				})
				t.Logf("%v killed: all dead in one view after %s (each first agreed at %v)", victims, time.Since(start), first)
				s.settle(10 * time.Second)
				for _, n := range survivors {
					if err := s.node(n).Quorum(); err != nil {
						t.Errorf("%s: %v", n, err)
					}
				}
				t.Logf("monitors afterwards %v", monitorIDs(s.view(survivors[0])))
			})
		})
	}
}
