package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The behaviour suite runs against every Network implementation.

type testNet struct {
	name       string
	server     Network // host of the node that serves
	client     Network // host of the client that calls
	listenAddr string
	nodePeer   Peer
	clientPeer Peer
}

func quicTestNet(t *testing.T) testNet {
	t.Helper()
	dir := t.TempDir()
	node, err := LoadOrCreateNode(filepath.Join(dir, "n1"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := IssueClient(filepath.Join(dir, "n1"), "alice", filepath.Join(dir, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := LoadClient(filepath.Join(dir, "n1", "ca.pem"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return testNet{
		name:       "quic",
		server:     NewQUIC(node, QUICConfig{}),
		client:     NewQUIC(client, QUICConfig{}),
		listenAddr: "127.0.0.1:0",
		nodePeer:   Peer{Role: RoleNode, ID: "n1"},
		clientPeer: Peer{Role: RoleClient, ID: "alice"},
	}
}

func memTestNet(t *testing.T) testNet {
	m := NewMemNetwork(1)
	np, cp := Peer{Role: RoleNode, ID: "n1"}, Peer{Role: RoleClient, ID: "alice"}
	return testNet{name: "mem", server: m.Host("n1", np), client: m.Host("c1", cp), listenAddr: "n1:0", nodePeer: np, clientPeer: cp}
}

func forEachNetwork(t *testing.T, f func(t *testing.T, tn testNet)) {
	for _, mk := range []func(*testing.T) testNet{quicTestNet, memTestNet} {
		tn := mk(t)
		t.Run(tn.name, func(t *testing.T) { f(t, tn) })
	}
}

type echoMsg struct {
	Text string `cbor:"1,keyasint"`
	N    int    `cbor:"2,keyasint"`
	Blob []byte `cbor:"3,keyasint,omitempty"`
}

// startServer serves the test handlers on tn and returns the address.
func startServer(t *testing.T, tn testNet, cfg ServerConfig) (string, *Server) {
	t.Helper()
	srv := NewServer(cfg)
	srv.Handle("echo", func(ctx context.Context, c *ServerCall) error {
		var m echoMsg
		if err := c.Recv(&m); err != nil {
			return err
		}
		return c.Send(m)
	})
	srv.Handle("fail", func(ctx context.Context, c *ServerCall) error {
		var m echoMsg
		if err := c.Recv(&m); err != nil {
			return err
		}
		return Errorf(CodeNotFound, "item %d of job %q not found", m.N, m.Text)
	})
	srv.Handle("plain", func(ctx context.Context, c *ServerCall) error {
		return errors.New("disk on fire")
	})
	srv.Handle("panic", func(ctx context.Context, c *ServerCall) error {
		panic("handler bug")
	})
	srv.Handle("count", func(ctx context.Context, c *ServerCall) error {
		var m echoMsg
		if err := c.Recv(&m); err != nil {
			return err
		}
		for i := range m.N {
			if err := c.Send(echoMsg{N: i}); err != nil {
				return err
			}
		}
		return nil
	})
	srv.Handle("sum", func(ctx context.Context, c *ServerCall) error {
		sum := 0
		for {
			var m echoMsg
			err := c.Recv(&m)
			if err == io.EOF {
				return c.Send(echoMsg{N: sum})
			}
			if err != nil {
				return err
			}
			sum += m.N
		}
	})
	srv.Handle("chat", func(ctx context.Context, c *ServerCall) error {
		for {
			var m echoMsg
			err := c.Recv(&m)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			m.N *= 2
			if err := c.Send(m); err != nil {
				return err
			}
		}
	})
	srv.Handle("whoami", func(ctx context.Context, c *ServerCall) error {
		p := c.Peer()
		return c.Send(echoMsg{Text: string(p.Role) + "/" + p.ID})
	})
	blocked := make(chan struct{}, 16)
	srv.Handle("block", func(ctx context.Context, c *ServerCall) error {
		blocked <- struct{}{}
		<-ctx.Done()
		blocked <- struct{}{}
		return ctx.Err()
	})
	srvBlocked[srv] = blocked

	l, err := tn.server.Listen(tn.listenAddr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr(), srv
}

// srvBlocked lets the cancellation test see the "block" handler's progress.
var srvBlocked = map[*Server]chan struct{}{}

func dialClient(t *testing.T, tn testNet, addr string, cfg ClientConfig) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, tn.client, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBehaviour(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		addr, srv := startServer(t, tn, ServerConfig{MaxFrame: 64 << 10})
		client := dialClient(t, tn, addr, ClientConfig{})

		t.Run("Unary", func(t *testing.T) {
			var out echoMsg
			in := echoMsg{Text: "hello", N: 7, Blob: []byte{1, 2, 3}}
			if err := client.Call(testCtx(t), "echo", in, &out); err != nil {
				t.Fatal(err)
			}
			if out.Text != in.Text || out.N != in.N || !bytes.Equal(out.Blob, in.Blob) {
				t.Fatalf("got %+v, want %+v", out, in)
			}
		})

		t.Run("ServerStreaming", func(t *testing.T) {
			s, err := client.Stream(testCtx(t), "count")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 2000
			if err := s.Send(echoMsg{N: n}); err != nil {
				t.Fatal(err)
			}
			if err := s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				var m echoMsg
				if err := s.Recv(&m); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if m.N != i {
					t.Fatalf("message %d carries %d", i, m.N)
				}
			}
			var m echoMsg
			if err := s.Recv(&m); err != io.EOF {
				t.Fatalf("after the last message: got %v, want io.EOF", err)
			}
		})

		t.Run("ClientStreaming", func(t *testing.T) {
			s, err := client.Stream(testCtx(t), "sum")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want := 0
			for i := range 2000 {
				want += i
				if err := s.Send(echoMsg{N: i}); err != nil {
					t.Fatal(err)
				}
			}
			s.CloseSend()
			var m echoMsg
			if err := s.Recv(&m); err != nil || m.N != want {
				t.Fatalf("got %d, %v; want %d", m.N, err, want)
			}
			if err := s.Recv(&m); err != io.EOF {
				t.Fatalf("got %v, want io.EOF", err)
			}
		})

		t.Run("BidiStreaming", func(t *testing.T) {
			s, err := client.Stream(testCtx(t), "chat")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 500
			errc := make(chan error, 1)
			go func() {
				for i := range n {
					if err := s.Send(echoMsg{N: i, Blob: make([]byte, 1000)}); err != nil {
						errc <- err
						return
					}
				}
				errc <- s.CloseSend()
			}()
			for i := range n {
				var m echoMsg
				if err := s.Recv(&m); err != nil || m.N != 2*i {
					t.Fatalf("reply %d: got %d, %v", i, m.N, err)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			var m echoMsg
			if err := s.Recv(&m); err != io.EOF {
				t.Fatalf("got %v, want io.EOF", err)
			}
		})

		t.Run("ErrorCodesCross", func(t *testing.T) {
			var out echoMsg
			err := client.Call(testCtx(t), "fail", echoMsg{Text: "j1", N: 17}, &out)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeNotFound || e.Message != `item 17 of job "j1" not found` {
				t.Fatalf("got %#v", err)
			}
			err = client.Call(testCtx(t), "plain", echoMsg{}, &out)
			if CodeOf(err) != CodeInternal || !errors.As(err, &e) || e.Message != "disk on fire" {
				t.Fatalf("got %v", err)
			}
			err = client.Call(testCtx(t), "panic", echoMsg{}, &out)
			if CodeOf(err) != CodeInternal {
				t.Fatalf("got %v", err)
			}
			if err := client.Call(testCtx(t), "echo", echoMsg{Text: "still here"}, &out); err != nil || out.Text != "still here" {
				t.Fatalf("after a panic: %v", err)
			}
		})

		t.Run("UnknownMethod", func(t *testing.T) {
			var out echoMsg
			err := client.Call(testCtx(t), "no.such.method", echoMsg{}, &out)
			if CodeOf(err) != CodeUnknownMethod {
				t.Fatalf("got %v, want %s", err, CodeUnknownMethod)
			}
		})

		t.Run("PeerIdentity", func(t *testing.T) {
			if got := client.Conn().Peer(); got != tn.nodePeer {
				t.Fatalf("client sees %+v, want %+v", got, tn.nodePeer)
			}
			var out echoMsg
			if err := client.Call(testCtx(t), "whoami", echoMsg{}, &out); err != nil {
				t.Fatal(err)
			}
			if want := string(tn.clientPeer.Role) + "/" + tn.clientPeer.ID; out.Text != want {
				t.Fatalf("server sees %q, want %q", out.Text, want)
			}
		})

		t.Run("OversizedFrameFromClient", func(t *testing.T) {
			// This client's cap is higher than the server's, so the frame goes out.
			big := dialClient(t, tn, addr, ClientConfig{MaxFrame: 16 << 20})
			var out echoMsg
			err := big.Call(testCtx(t), "echo", echoMsg{Blob: make([]byte, 1<<20)}, &out)
			if c := CodeOf(err); c != CodeTooLarge && c != CodeUnavailable {
				t.Fatalf("got %v, want %s or a closed stream", err, CodeTooLarge)
			}
			t.Logf("oversized frame: %v", err)
			// The server keeps serving, this client and others.
			for _, c := range []*Client{big, client} {
				if err := c.Call(testCtx(t), "echo", echoMsg{Text: "ok"}, &out); err != nil || out.Text != "ok" {
					t.Fatalf("after an oversized frame: %v", err)
				}
			}
		})

		t.Run("OversizedFrameRefusedLocally", func(t *testing.T) {
			small := dialClient(t, tn, addr, ClientConfig{MaxFrame: 1024})
			var out echoMsg
			err := small.Call(testCtx(t), "echo", echoMsg{Blob: make([]byte, 2048)}, &out)
			if CodeOf(err) != CodeTooLarge {
				t.Fatalf("got %v, want %s", err, CodeTooLarge)
			}
			// A response over the client's cap is refused too.
			err = small.Call(testCtx(t), "echo", echoMsg{Blob: make([]byte, 1000)}, &out)
			if err != nil {
				t.Fatalf("a frame under the cap: %v", err)
			}
		})

		t.Run("GarbageOnRawStream", func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 7))
			random := make([]byte, 4096)
			for i := range random {
				random[i] = byte(rng.Uint32())
			}
			inputs := map[string][]byte{
				"random bytes":           random,
				"huge declared length":   {0xff, 0xff, 0xff, 0xff, 'H'},
				"header frame, bad cbor": {0, 0, 0, 3, 'H', 0xbf, 0x01},
				"message before header":  {0, 0, 0, 2, 'M', 0x01},
				"empty frame":            {0, 0, 0, 0},
				"truncated frame":        {0, 0, 0, 9, 'H'},
				"header then garbage":    append([]byte{0, 0, 0, 7, 'H', 0xa1, 0x01, 0x64, 'e', 'c', 'h'}, random[:100]...),
				"bad message cbor":       {0, 0, 0, 8, 'H', 0xa1, 0x01, 0x64, 'e', 'c', 'h', 'o', 0, 0, 0, 3, 'M', 0x9f, 0x01},
			}
			for name, in := range inputs {
				t.Run(name, func(t *testing.T) {
					ctx := testCtx(t)
					st, err := client.Conn().OpenStream(ctx)
					if err != nil {
						t.Fatal(err)
					}
					defer st.Abort()
					st.Write(in)
					st.Close()
					st.SetDeadline(time.Now().Add(5 * time.Second))
					reply, _ := io.ReadAll(io.LimitReader(st, 1<<20))
					t.Logf("server answered %d bytes: %q", len(reply), reply)
					if name == "bad message cbor" && !bytes.Contains(reply, []byte(`request to "echo"`)) {
						t.Fatalf("a malformed message got %q, want a %s error frame", reply, CodeBadFrame)
					}
					var out echoMsg
					if err := client.Call(ctx, "echo", echoMsg{Text: "alive"}, &out); err != nil || out.Text != "alive" {
						t.Fatalf("server did not survive: %v", err)
					}
				})
			}
		})

		t.Run("CancelReachesHandler", func(t *testing.T) {
			ctx, cancel := context.WithCancel(testCtx(t))
			errc := make(chan error, 1)
			go func() {
				var out echoMsg
				errc <- client.Call(ctx, "block", echoMsg{}, &out)
			}()
			<-srvBlocked[srv] // the handler runs
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) || CodeOf(err) != CodeCancelled {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			select {
			case <-srvBlocked[srv]: // the handler saw its ctx end
			case <-time.After(10 * time.Second):
				t.Fatal("handler ctx was not cancelled after the client gave up")
			}
		})

		t.Run("ConcurrentCalls", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for i := range 50 {
				wg.Go(func() {
					var out echoMsg
					if err := client.Call(testCtx(t), "echo", echoMsg{N: i}, &out); err != nil || out.N != i {
						errs <- fmt.Errorf("call %d: %v, %d", i, err, out.N)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	})
}

func TestBehaviourConnLevel(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		l, err := tn.server.Listen(tn.listenAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.Addr() == tn.listenAddr || l.Addr() == "" {
			t.Fatalf("Addr() = %q: the real port is missing", l.Addr())
		}
		ctx := testCtx(t)
		accepted := make(chan Conn, 1)
		go func() {
			c, err := l.Accept(ctx)
			if err != nil {
				t.Error(err)
				close(accepted)
				return
			}
			accepted <- c
		}()
		cc, err := tn.client.Dial(ctx, l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close("test over")
		// The server sees the stream once bytes flow.
		st, err := cc.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("ping"))
		sc, ok := <-accepted
		if !ok {
			t.FailNow()
		}
		defer sc.Close("test over")
		if sc.Peer() != tn.clientPeer || cc.Peer() != tn.nodePeer {
			t.Fatalf("peers: server sees %+v, client sees %+v", sc.Peer(), cc.Peer())
		}
		ss, err := sc.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}

		t.Run("HalfClose", func(t *testing.T) {
			st.Close()
			got, err := io.ReadAll(ss)
			if err != nil || string(got) != "ping" {
				t.Fatalf("got %q, %v", got, err)
			}
			// Our side closed its writes; it can still read.
			ss.Write([]byte("pong"))
			ss.Close()
			got, err = io.ReadAll(st)
			if err != nil || string(got) != "pong" {
				t.Fatalf("got %q, %v", got, err)
			}
		})

		t.Run("AbortResetsBothWays", func(t *testing.T) {
			a, err := cc.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a.Write([]byte("x"))
			b, err := sc.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1)
			io.ReadFull(b, buf)
			a.Abort()
			b.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := b.Read(buf); err == nil || err == io.EOF {
				t.Fatalf("read after the peer's abort: %v, want a reset error", err)
			}
			var werr error
			for range 100 { // the stop may take a round trip to arrive
				if _, werr = b.Write(make([]byte, 1000)); werr != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if werr == nil {
				t.Fatal("writes kept succeeding after the peer aborted")
			}
		})

		t.Run("Deadline", func(t *testing.T) {
			a, err := cc.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Abort()
			a.SetDeadline(time.Now().Add(50 * time.Millisecond))
			_, err = a.Read(make([]byte, 1))
			var ne interface{ Timeout() bool }
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("got %v, want a timeout", err)
			}
		})

		t.Run("Datagrams", func(t *testing.T) {
			if err := cc.SendDatagram(make([]byte, MaxDatagramSize+1)); !errors.Is(err, ErrDatagramTooLarge) {
				t.Fatalf("oversized datagram: got %v", err)
			}
			payload := bytes.Repeat([]byte{0x5a}, MaxDatagramSize)
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			got := make(chan []byte, 1)
			go func() {
				b, err := sc.ReceiveDatagram(rctx)
				if err == nil {
					got <- b
				}
				close(got)
			}()
			// Datagrams are unreliable even on loopback: send until one arrives.
			for i := 0; ; i++ {
				if err := cc.SendDatagram(payload); err != nil {
					t.Fatalf("a %d-byte datagram: %v", len(payload), err)
				}
				select {
				case b := <-got:
					if !bytes.Equal(b, payload) {
						t.Fatalf("got %d bytes", len(b))
					}
					return
				case <-time.After(50 * time.Millisecond):
				}
				if i > 50 {
					t.Fatal("no datagram arrived")
				}
			}
		})

		t.Run("CloseEndsPeerContext", func(t *testing.T) {
			cc.Close("bye")
			select {
			case <-sc.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("server conn context still alive after the client closed")
			}
			if _, err := sc.AcceptStream(ctx); err == nil {
				t.Fatal("AcceptStream on a closed connection succeeded")
			}
		})
	})
}

func TestServerLimitsAndShutdown(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		srv := NewServer(ServerConfig{MaxConcurrentCalls: 1})
		running := make(chan struct{}, 1)
		handlerDone := make(chan error, 1)
		srv.Handle("hold", func(ctx context.Context, c *ServerCall) error {
			running <- struct{}{}
			<-ctx.Done()
			handlerDone <- ctx.Err()
			return ctx.Err()
		})
		l, err := tn.server.Listen(tn.listenAddr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, stopServing := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ctx, l) }()
		defer srv.Close()
		client := dialClient(t, tn, l.Addr(), ClientConfig{})

		first := make(chan error, 1)
		go func() {
			var out echoMsg
			first <- client.Call(testCtx(t), "hold", echoMsg{}, &out)
		}()
		<-running
		var out echoMsg
		err = client.Call(testCtx(t), "hold", echoMsg{}, &out)
		if CodeOf(err) != CodeUnavailable {
			t.Fatalf("a call over the limit: %v, want %s", err, CodeUnavailable)
		}

		// Ending Serve's ctx cancels running handlers and closes connections.
		stopServing()
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its ctx ended")
		}
		if err := <-handlerDone; err == nil {
			t.Fatal("handler ctx was not cancelled")
		}
		if err := <-first; err == nil {
			t.Fatal("the held call succeeded after the server went away")
		}
		if tn.name == "mem" { // over UDP this would only time out
			if _, err := tn.client.Dial(testCtx(t), l.Addr()); err == nil {
				t.Fatal("dialed a server whose listener was closed")
			}
		}
	})
}
