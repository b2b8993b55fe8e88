package udpproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridnode/gridnode/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait for something that must happen.
const waitFor = 5 * time.Second

type packet struct {
	from string
	data string
	at   time.Time
}

// echoNode stands in for a node: one UDP socket that answers "ping X" with
// "pong X" to whoever sent it, and reports every datagram it receives.
type echoNode struct {
	conn *net.UDPConn
	got  chan packet
	done chan struct{}
}

func newEcho(t testing.TB) *echoNode {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	e := &echoNode{conn: conn, got: make(chan packet, 4096), done: make(chan struct{})}
	go e.serve()
	t.Cleanup(e.close)
	return e
}

func (e *echoNode) serve() {
	defer close(e.done)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		data := string(buf[:n])
		if rest, ok := strings.CutPrefix(data, "ping "); ok {
			e.conn.WriteToUDPAddrPort([]byte("pong "+rest), from)
		}
		select {
		case e.got <- packet{from: from.String(), data: data, at: time.Now()}:
		default: // a test that does not read what it receives
		}
	}
}

func (e *echoNode) close() {
	e.conn.Close()
	<-e.done
}

func (e *echoNode) addr() string { return e.conn.LocalAddr().String() }

func (e *echoNode) send(t testing.TB, to, data string) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.WriteToUDP([]byte(data), ua); err != nil {
		t.Fatal(err)
	}
}

// expect waits for the datagram data, skipping others.
func (e *echoNode) expect(t testing.TB, data string) packet {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case p := <-e.got:
			if p.data == data {
				return p
			}
		case <-deadline:
			t.Fatalf("%s: no %q within %v", e.addr(), data, waitFor)
		}
	}
}

// expectNothing checks that nothing arrived. Call it once the proxy has
// counted the drop: a dropped datagram is never sent, so there is nothing
// in flight to wait for.
func (e *echoNode) expectNothing(t testing.TB) {
	t.Helper()
	select {
	case p := <-e.got:
		t.Fatalf("%s: unexpected %q from %s", e.addr(), p.data, p.from)
	default:
	}
}

// waitStats polls the proxy's counters until cond holds.
func waitStats(t testing.TB, p *Proxy, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s := p.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; stats %+v", what, waitFor, s)
		}
		time.Sleep(time.Millisecond)
	}
}

func newProxy(t testing.TB, seed int64) *Proxy {
	t.Helper()
	t.Logf("udpproxy seed %d", seed)
	p := New(seed)
	t.Cleanup(func() { p.Close() })
	return p
}

func addNode(t testing.TB, p *Proxy, name string, e *echoNode) string {
	t.Helper()
	pub, err := p.AddNode(name, e.addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// roundTrip checks that from reaches the node behind public and that the
// answer comes back from public.
func roundTrip(t testing.TB, from, to *echoNode, public, tag string) {
	t.Helper()
	from.send(t, public, "ping "+tag)
	to.expect(t, "ping "+tag)
	if got := from.expect(t, "pong "+tag); got.from != public {
		t.Fatalf("answer to %q came from %s, want the public address %s", tag, got.from, public)
	}
}

// dropped checks that from's ping to public is dropped on the way there,
// counted by counter.
func dropped(t testing.TB, p *Proxy, from, to *echoNode, public, tag string, counter func(Stats) uint64) {
	t.Helper()
	before := counter(p.Stats())
	from.send(t, public, "ping "+tag)
	waitStats(t, p, "drop of "+tag, func(s Stats) bool { return counter(s) == before+1 })
	to.expectNothing(t)
	from.expectNothing(t)
}

func blocks(s Stats) uint64     { return s.DroppedBlock }
func partitions(s Stats) uint64 { return s.DroppedPartition }

func TestForwardsBothWaysWithReturnPath(t *testing.T) {
	p := newProxy(t, 1)
	a, b, cli := newEcho(t), newEcho(t), newEcho(t)
	pa, pb := addNode(t, p, "a", a), addNode(t, p, "b", b)
	if p.Public("a") != pa || p.Public("nobody") != "" {
		t.Fatalf("Public(a) = %q, Public(nobody) = %q", p.Public("a"), p.Public("nobody"))
	}

	a.send(t, pb, "ping 1")
	got := b.expect(t, "ping 1")
	if got.from == a.addr() || got.from == pa || got.from == pb {
		t.Fatalf("b saw a's datagram from %s: want one of the proxy's upstream sockets", got.from)
	}
	if pong := a.expect(t, "pong 1"); pong.from != pb {
		t.Fatalf("a got b's answer from %s, want %s", pong.from, pb)
	}
	roundTrip(t, b, a, pa, "2")
	roundTrip(t, cli, a, pa, "3")
	roundTrip(t, cli, b, pb, "4")

	s := p.Stats()
	for l, want := range map[Link]uint64{
		{"a", "b"}: 1, {"b", "a"}: 1, // ping 1, pong 1
		{"client", "a"}: 1, {"a", "client"}: 1,
	} {
		if s.Links[l].Passed < want || s.Links[l].Dropped != 0 {
			t.Errorf("link %v: %+v, want %d passed", l, s.Links[l], want)
		}
	}
	// (a, b), (b, a), (client, a), (client, b).
	if s.Upstreams != 4 {
		t.Errorf("Upstreams = %d, want 4", s.Upstreams)
	}
	// Counted once the write returns, which may be after the echo arrived.
	waitStats(t, p, "8 forwarded", func(s Stats) bool { return s.Forwarded == 8 })
}

func TestBlockIsOneDirection(t *testing.T) {
	p := newProxy(t, 2)
	a, b, cli := newEcho(t), newEcho(t), newEcho(t)
	pa, pb := addNode(t, p, "a", a), addNode(t, p, "b", b)
	p.Block("a", "b")

	dropped(t, p, a, b, pb, "a-to-b", blocks)

	// b → a arrives, but a's answer is a → b again.
	b.send(t, pa, "ping b-to-a")
	a.expect(t, "ping b-to-a")
	waitStats(t, p, "drop of a's answer", func(s Stats) bool { return s.DroppedBlock == 2 })
	b.expectNothing(t)

	// Link rules leave outside clients alone; "*" isolates.
	roundTrip(t, cli, b, pb, "client")
	p.Block("*", "b")
	dropped(t, p, cli, b, pb, "client-isolated", blocks)
	roundTrip(t, cli, a, pa, "client-to-a")

	p.Heal()
	roundTrip(t, a, b, pb, "healed")
	roundTrip(t, cli, b, pb, "client-healed")
}

func TestPartition(t *testing.T) {
	p := newProxy(t, 3)
	e := map[string]*echoNode{}
	pub := map[string]string{}
	for _, name := range []string{"a", "b", "c", "d"} {
		e[name] = newEcho(t)
		pub[name] = addNode(t, p, name, e[name])
	}
	cli := newEcho(t)
	check := func(reach map[string]bool) {
		t.Helper()
		i := 0
		for _, from := range []string{"a", "b", "c", "d"} {
			for _, to := range []string{"a", "b", "c", "d"} {
				if from == to {
					continue
				}
				i++
				tag := fmt.Sprintf("%s-%s-%d", from, to, i)
				if reach[from+to] || reach[to+from] {
					roundTrip(t, e[from], e[to], pub[to], tag)
				} else {
					dropped(t, p, e[from], e[to], pub[to], tag, partitions)
				}
			}
			roundTrip(t, cli, e[from], pub[from], "client-"+from)
		}
	}

	// d is in no group, so alone in the rest.
	p.Partition([]string{"a", "b"}, []string{"c"})
	check(map[string]bool{"ab": true})

	// Replaces the previous one; c and d are the rest together.
	p.Partition([]string{"a"})
	check(map[string]bool{"bc": true, "bd": true, "cd": true})

	p.Heal()
	check(map[string]bool{"ab": true, "ac": true, "ad": true, "bc": true, "bd": true, "cd": true})
}

func TestLossFollowsSeed(t *testing.T) {
	const seed, total, batch = 42, 2000, 100
	p := newProxy(t, seed)
	a, b := newEcho(t), newEcho(t)
	addNode(t, p, "a", a)
	pb := addNode(t, p, "b", b)
	p.SetLoss("a", "b", 0.5)

	ua, err := net.ResolveUDPAddr("udp", pb)
	if err != nil {
		t.Fatal(err)
	}
	judged := func(s Stats) uint64 { l := s.Links[Link{"a", "b"}]; return l.Passed + l.Dropped }
	// In batches, so no kernel buffer overflows and every datagram is judged.
	for sent := 0; sent < total; {
		for range batch {
			if _, err := a.conn.WriteToUDP([]byte("x"), ua); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		waitStats(t, p, "judging a batch", func(s Stats) bool { return judged(s) == uint64(sent) })
	}
	s := p.Stats()
	t.Logf("seed %d: dropped %d of %d", seed, s.DroppedLoss, total)
	// The mean is 1000 with a standard deviation of about 22.
	if s.DroppedLoss < 850 || s.DroppedLoss > 1150 {
		t.Fatalf("dropped %d of %d at loss 0.5", s.DroppedLoss, total)
	}
	received := 0
	waitStats(t, p, "delivery", func(s Stats) bool {
		for len(b.got) > 0 {
			<-b.got
			received++
		}
		return uint64(received) == s.Links[Link{"a", "b"}].Passed
	})

	// Other directions are lossless.
	p.SetLoss("a", "b", 0)
	roundTrip(t, a, b, pb, "lossless")
}

func TestDelayIsAtLeastD(t *testing.T) {
	const d, jitter, n = 50 * time.Millisecond, 20 * time.Millisecond, 20
	p := newProxy(t, 4)
	a, b := newEcho(t), newEcho(t)
	addNode(t, p, "a", a)
	pb := addNode(t, p, "b", b)
	p.SetDelay("a", "b", d, jitter)

	sent := map[string]time.Time{}
	for i := range n {
		msg := fmt.Sprintf("d%d", i)
		sent[msg] = time.Now()
		a.send(t, pb, msg)
	}
	deadline := time.After(waitFor)
	for range n {
		select {
		case pkt := <-b.got:
			if took := pkt.at.Sub(sent[pkt.data]); took < d {
				t.Errorf("%s arrived after %v, before the delay of %v", pkt.data, took, d)
			}
		case <-deadline:
			t.Fatalf("delayed datagrams did not arrive within %v: %+v", waitFor, p.Stats())
		}
	}
	if s := p.Stats(); s.Delayed != n || s.Pending != 0 {
		t.Errorf("Delayed = %d, Pending = %d; want %d and 0", s.Delayed, s.Pending, n)
	}

	// The answer b → a is not delayed; Reset removes the rule.
	p.Reset()
	start := time.Now()
	roundTrip(t, a, b, pb, "reset")
	t.Logf("round trip after Reset: %v", time.Since(start))
	if s := p.Stats(); s.Delayed != n {
		t.Errorf("Delayed = %d after Reset, want %d", s.Delayed, n)
	}
}

func TestRestartedNode(t *testing.T) {
	p := newProxy(t, 5)
	a, b := newEcho(t), newEcho(t)
	addNode(t, p, "a", a)
	pb := addNode(t, p, "b", b)
	roundTrip(t, a, b, pb, "before")

	b.close()
	b2 := newEcho(t)
	if err := p.SetReal("b", b2.addr()); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, b2, pb, "after")
	if err := p.SetReal("b", a.addr()); err == nil {
		t.Fatal("SetReal to another node's real address succeeded")
	}
	if err := p.SetReal("nobody", b2.addr()); err == nil {
		t.Fatal("SetReal of an unknown node succeeded")
	}
	if _, err := p.AddNode("b", b2.addr(), ""); err == nil {
		t.Fatal("AddNode of a registered name succeeded")
	}

	// A new proxy keeps the public address it is given.
	p.Close()
	p2 := newProxy(t, 6)
	addNode(t, p2, "a", a)
	got, err := p2.AddNode("b", b2.addr(), pb)
	if err != nil {
		t.Fatal(err)
	}
	if got != pb {
		t.Fatalf("public address %s, want %s", got, pb)
	}
	roundTrip(t, a, b2, pb, "new proxy")
}

func TestIdleUpstreamsClose(t *testing.T) {
	p := newProxy(t, 7)
	p.idle = 50 * time.Millisecond
	a, cli := newEcho(t), newEcho(t)
	pa := addNode(t, p, "a", a)

	roundTrip(t, cli, a, pa, "1")
	if n := p.Stats().Upstreams; n != 1 {
		t.Fatalf("%d upstreams, want 1", n)
	}
	waitStats(t, p, "idle upstream closed", func(s Stats) bool { return s.Upstreams == 0 })
	roundTrip(t, cli, a, pa, "2")
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	a, b, cli := newEcho(t), newEcho(t), newEcho(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	p := New(8)
	addNode(t, p, "a", a)
	pb := addNode(t, p, "b", b)
	roundTrip(t, a, b, pb, "1")
	roundTrip(t, cli, b, pb, "2")
	p.SetDelay("*", "*", time.Hour, 0)
	a.send(t, pb, "never")
	waitStats(t, p, "delayed", func(s Stats) bool { return s.Pending == 1 })

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.AddNode("c", cli.addr(), ""); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("AddNode after Close: %v", err)
	}
}

func TestQUICThroughProxy(t *testing.T) {
	dir := t.TempDir()
	nodeDir := filepath.Join(dir, "a")
	creds, err := transport.LoadOrCreateNode(nodeDir, "a")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := transport.IssueClient(nodeDir, "cli", filepath.Join(dir, "cli"))
	if err != nil {
		t.Fatal(err)
	}
	cliCreds, err := transport.LoadClient(filepath.Join(nodeDir, "ca.pem"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	l, err := transport.NewQUIC(creds, transport.QUICConfig{}).Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(transport.ServerConfig{})
	srv.Handle("echo", func(ctx context.Context, call *transport.ServerCall) error {
		var s string
		if err := call.Recv(&s); err != nil {
			return err
		}
		return call.Send("echo " + s)
	})
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(context.Background(), l) })
	defer wg.Wait()
	defer srv.Close()

	p := newProxy(t, 9)
	pub, err := p.AddNode("a", l.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cli, err := transport.Dial(ctx, transport.NewQUIC(cliCreds, transport.QUICConfig{}), pub, transport.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	call := func(ctx context.Context, msg string) error {
		var resp string
		if err := cli.Call(ctx, "echo", msg, &resp); err != nil {
			return err
		}
		if resp != "echo "+msg {
			return fmt.Errorf("response %q", resp)
		}
		return nil
	}
	if err := call(ctx, "hello"); err != nil {
		t.Fatalf("call through the proxy: %v", err)
	}
	if got := cli.Conn().RemoteAddr(); got != pub {
		t.Fatalf("client talks to %s, want the public address %s", got, pub)
	}

	p.Block("*", "a")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = call(short, "blocked")
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call while blocked: %v, want a deadline error", err)
	}
	if s := p.Stats(); s.Links[Link{"client", "a"}].Dropped == 0 {
		t.Fatalf("nothing dropped while blocked: %+v", s)
	}

	p.Heal()
	if err := call(ctx, "healed"); err != nil {
		t.Fatalf("call after Heal: %v", err)
	}
}

// BenchmarkRoundTrip measures datagrams per second through the proxy: a
// client keeps a window of pings in flight to an echo node behind it, so
// every op is two proxied datagrams of 1200 bytes (a full QUIC packet).
func BenchmarkRoundTrip(b *testing.B) {
	const window = 64
	p := New(1)
	defer p.Close()
	node, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := node.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			node.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	defer func() { node.Close(); <-echoDone }()
	pub, err := p.AddNode("a", node.LocalAddr().String(), "")
	if err != nil {
		b.Fatal(err)
	}
	cli, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	dst, _ := net.ResolveUDPAddr("udp", pub)
	pkt := make([]byte, 1200)
	buf := make([]byte, 64<<10)

	lost := 0
	b.ResetTimer()
	start := time.Now()
	inFlight, sent := 0, 0
	for received := 0; received+lost < b.N; {
		for inFlight < window && sent < b.N {
			if _, err := cli.WriteToUDP(pkt, dst); err != nil {
				b.Fatal(err)
			}
			inFlight++
			sent++
		}
		cli.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := cli.ReadFromUDP(buf); err != nil {
			lost += inFlight // a kernel buffer overflowed; start a new window
			inFlight = 0
			continue
		}
		inFlight--
		received++
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(2*(b.N-lost))/elapsed.Seconds(), "datagrams/s")
	b.ReportMetric(float64(lost), "lost")
}
