package transport

import (
	"context"
	"errors"
	"flag"
	"io"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

var memSeed = flag.Int64("memnet.seed", 0, "seed for randomised MemNetwork tests (0 = new seed each run)")

func nodePeer(id string) Peer { return Peer{Role: RoleNode, ID: id} }

// memPair dials a→b on m and returns both ends; it must run in a bubble.
func memPair(t *testing.T, m *MemNetwork, a, b string) (client, server Conn, l Listener) {
	t.Helper()
	l, err := m.Host(b, nodePeer(b)).Listen(b)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan Conn, 1)
	go func() {
		c, err := l.Accept(context.Background())
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = m.Host(a, nodePeer(a)).Dial(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return client, server, l
}

func TestMemNetDelayIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(1)
		m.SetDelay("a", "b", 50*time.Millisecond)
		m.SetDelay("b", "a", 20*time.Millisecond)

		start := time.Now()
		c, s, l := memPair(t, m, "a", "b")
		defer l.Close()
		defer c.Close("done")
		if d := time.Since(start); d != 70*time.Millisecond {
			t.Fatalf("dial took %v, want one round trip of 70ms", d)
		}

		t0 := time.Now()
		st, _ := c.OpenStream(context.Background())
		st.Write([]byte("x"))
		ss, err := s.AcceptStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(ss, buf); err != nil || time.Since(t0) != 50*time.Millisecond {
			t.Fatalf("a→b data arrived after %v (%v), want 50ms", time.Since(t0), err)
		}

		t1 := time.Now()
		ss.Write([]byte("y"))
		if _, err := io.ReadFull(st, buf); err != nil || time.Since(t1) != 20*time.Millisecond {
			t.Fatalf("b→a data arrived after %v (%v), want 20ms", time.Since(t1), err)
		}

		t2 := time.Now()
		st.Close()
		if _, err := ss.Read(buf); err != io.EOF || time.Since(t2) != 50*time.Millisecond {
			t.Fatalf("FIN arrived after %v (%v), want EOF after 50ms", time.Since(t2), err)
		}

		t3 := time.Now()
		c.SendDatagram([]byte("hb"))
		d, err := s.ReceiveDatagram(context.Background())
		if err != nil || string(d) != "hb" || time.Since(t3) != 50*time.Millisecond {
			t.Fatalf("datagram %q arrived after %v (%v), want 50ms", d, time.Since(t3), err)
		}

		// A delay change mid-stream never reorders bytes.
		m.SetDelay("a", "b", 0)
		st2, _ := c.OpenStream(context.Background())
		m.SetDelay("a", "b", 100*time.Millisecond)
		st2.Write([]byte("1"))
		m.SetDelay("a", "b", 10*time.Millisecond)
		st2.Write([]byte("2"))
		st2.Close()
		ss2, _ := s.AcceptStream(context.Background())
		got, _ := io.ReadAll(ss2)
		if string(got) != "12" {
			t.Fatalf("got %q, want in-order %q", got, "12")
		}
	})
}

func TestMemNetCallLatencyIsOneRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(1)
		m.SetDelay("c", "n1", 30*time.Millisecond)
		m.SetDelay("n1", "c", 12*time.Millisecond)
		srv := NewServer(ServerConfig{})
		srv.Handle("echo", func(ctx context.Context, c *ServerCall) error {
			var v echoMsg
			if err := c.Recv(&v); err != nil {
				return err
			}
			return c.Send(v)
		})
		l, err := m.Host("n1", nodePeer("n1")).Listen("n1")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- srv.Serve(context.Background(), l) }()
		client, err := Dial(context.Background(), m.Host("c", Peer{Role: RoleClient, ID: "c"}), "n1", ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var out echoMsg
		if err := client.Call(context.Background(), "echo", echoMsg{N: 5}, &out); err != nil || out.N != 5 {
			t.Fatalf("call: %v", err)
		}
		if d := time.Since(start); d != 42*time.Millisecond {
			t.Fatalf("call took %v, want exactly one round trip (42ms)", d)
		}
		client.Close()
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Fatal(err)
		}
	})
}

func TestMemNetPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(1)
		c, s, l := memPair(t, m, "a", "b")
		defer l.Close()
		defer c.Close("done")
		st, _ := c.OpenStream(context.Background())
		st.Write([]byte("before"))
		ss, _ := s.AcceptStream(context.Background())
		buf := make([]byte, 6)
		io.ReadFull(ss, buf)

		m.Partition([]string{"a"}, []string{"b"})

		// Dials fail, the way an unanswered handshake does.
		start := time.Now()
		_, err := m.Host("a", nodePeer("a")).Dial(context.Background(), "b")
		if !errors.Is(err, ErrUnreachable) || time.Since(start) != memDialTimeout {
			t.Fatalf("dial across the partition: %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = m.Host("a", nodePeer("a")).Dial(ctx, "b")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial with a 1s ctx: %v", err)
		}

		// Datagrams are dropped.
		c.SendDatagram([]byte("lost"))
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		if d, err := s.ReceiveDatagram(ctx); err == nil {
			t.Fatalf("datagram %q crossed a partition", d)
		}
		cancel()

		// Stream writes stall until the partition heals.
		wrote := make(chan error, 1)
		go func() {
			_, err := st.Write([]byte("after"))
			wrote <- err
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-wrote:
			t.Fatalf("a write crossed a partition (%v)", err)
		default:
		}
		// A deadline still ends a stalled write.
		st.SetDeadline(time.Now().Add(time.Second))
		if err := <-wrote; !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
			t.Fatalf("stalled write with a deadline: %v", err)
		}
		st.SetDeadline(time.Time{})
		go func() {
			_, err := st.Write([]byte("after"))
			wrote <- err
		}()
		synctest.Wait()

		m.Heal()
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		buf = make([]byte, 5)
		if _, err := io.ReadFull(ss, buf); err != nil || string(buf) != "after" {
			t.Fatalf("after heal: %q, %v", buf, err)
		}
		c2, err := m.Host("a", nodePeer("a")).Dial(context.Background(), "b")
		if err != nil {
			t.Fatalf("dial after heal: %v", err)
		}
		c2.Close("done")
		if m.DroppedDatagrams() != 1 {
			t.Fatalf("dropped %d datagrams, want 1", m.DroppedDatagrams())
		}
	})
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// lossRun sends n datagrams a→b with loss p and returns which arrived.
func lossRun(t *testing.T, seed int64, p float64, n int) []int {
	var got []int
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(seed)
		c, s, l := memPair(t, m, "a", "b")
		defer l.Close()
		defer c.Close("done")
		m.SetLoss("a", "b", p)
		for i := range n {
			if err := c.SendDatagram([]byte{byte(i >> 8), byte(i)}); err != nil {
				t.Fatal(err)
			}
			if i%100 == 99 || i == n-1 {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					d, err := s.ReceiveDatagram(ctx)
					cancel()
					if err != nil {
						break
					}
					got = append(got, int(d[0])<<8|int(d[1]))
				}
			}
		}
	})
	return got
}

func TestMemNetLossRateAndReplay(t *testing.T) {
	seed := *memSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("memnet seed %d (replay with -memnet.seed=%d)", seed, seed)
	const n, p = 5000, 0.25
	first := lossRun(t, seed, p, n)
	rate := 1 - float64(len(first))/n
	if rate < p-0.03 || rate > p+0.03 {
		t.Fatalf("dropped %.3f of datagrams, want about %.2f (seed %d)", rate, p, seed)
	}
	if again := lossRun(t, seed, p, n); !slices.Equal(first, again) {
		t.Fatalf("seed %d did not replay: %d vs %d delivered", seed, len(first), len(again))
	}
	if other := lossRun(t, seed+1, p, n); slices.Equal(first, other) {
		t.Fatal("a different seed dropped exactly the same datagrams")
	}
	// Streams stay reliable on a lossy link.
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(seed)
		m.SetLoss("a", "b", 1)
		c, s, l := memPair(t, m, "a", "b")
		defer l.Close()
		defer c.Close("done")
		st, _ := c.OpenStream(context.Background())
		go func() {
			st.Write(make([]byte, 3<<20)) // more than the stream window: blocks until read
			st.Close()
		}()
		ss, _ := s.AcceptStream(context.Background())
		got, err := io.ReadAll(ss)
		if err != nil || len(got) != 3<<20 {
			t.Fatalf("stream over a lossy link delivered %d bytes, %v", len(got), err)
		}
	})
}

func TestMemNetAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemNetwork(1)
		h := m.Host("n1", nodePeer("n1"))
		l1, err := h.Listen("n1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l1.Close()
		l2, err := h.Listen(":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if l1.Addr() == l2.Addr() || l1.Addr() == "n1:0" {
			t.Fatalf("ephemeral addresses %q, %q", l1.Addr(), l2.Addr())
		}
		if _, err := h.Listen(l1.Addr()); err == nil {
			t.Fatal("listened twice on one address")
		}
		if _, err := h.Listen("n2:7"); err == nil {
			t.Fatal("listened on another host's address")
		}
		other := m.Host("c", nodePeer("c"))
		if _, err := other.Dial(context.Background(), "n1:9"); err == nil {
			t.Fatal("dialed an address nobody listens on")
		}
		c, err := other.Dial(context.Background(), l2.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if c.Peer() != nodePeer("n1") || c.RemoteAddr() != l2.Addr() {
			t.Fatalf("peer %+v at %q", c.Peer(), c.RemoteAddr())
		}
		c.Close("done")
		// Closing a listener refuses new dials and unblocks Accept.
		l1.Close()
		if _, err := other.Dial(context.Background(), l1.Addr()); err == nil {
			t.Fatal("dialed a closed listener")
		}
		if _, err := l1.Accept(context.Background()); err == nil {
			t.Fatal("Accept on a closed listener succeeded")
		}
	})
}
