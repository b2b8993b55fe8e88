package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRawStream(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		addr, srv := startServer(t, tn, ServerConfig{})
		srv.HandleRaw("upper", func(ctx context.Context, peer Peer, st Stream) {
			defer st.Close()
			r := bufio.NewReader(st)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(st, peer.ID+":"+strings.ToUpper(line)); err != nil {
					return
				}
			}
		})
		srv.HandleRaw("boom", func(ctx context.Context, peer Peer, st Stream) { panic("raw handler bug") })
		c := dialClient(t, tn, addr, ClientConfig{})
		ctx := testCtx(t)

		st, err := c.OpenRaw(ctx, "upper")
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(st)
		for _, in := range []string{"hello\n", "raw bytes\n"} {
			if _, err := io.WriteString(st, in); err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if want := tn.clientPeer.ID + ":" + strings.ToUpper(in); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		st.Close()
		if _, err := r.ReadString('\n'); err != io.EOF {
			t.Fatalf("after half-close: %v, want EOF", err)
		}

		// A panicking raw handler aborts its stream; the server lives on.
		st2, err := c.OpenRaw(ctx, "boom")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(st2); err == nil {
			t.Fatal("read from a stream whose handler panicked succeeded")
		}
		var m echoMsg
		if err := c.Call(ctx, "echo", echoMsg{Text: "still"}, &m); err != nil || m.Text != "still" {
			t.Fatalf("echo after raw panic: %v %+v", err, m)
		}

		// A raw method that does not exist gets the usual coded error frame.
		st3, err := c.OpenRaw(ctx, "nope")
		if err != nil {
			t.Fatal(err)
		}
		body, err := ReadFrame(st3, DefaultMaxFrame)
		if err != nil || len(body) == 0 || body[0] != frameError {
			t.Fatalf("unknown raw method: frame %q, %v", body, err)
		}
	})
}

// A listening node dials from its listening socket, so the peer sees the
// node's own address and a proxy can tell nodes apart.
func TestQUICDialsFromListeningSocket(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateNode(filepath.Join(dir, "a"), "a")
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "a", "ca.pem")
	bdir := filepath.Join(dir, "b")
	copyFile(t, ca, filepath.Join(bdir, "ca.pem"))
	copyFile(t, filepath.Join(dir, "a", "ca.key"), filepath.Join(bdir, "ca.key"))
	b, err := LoadOrCreateNode(bdir, "b")
	if err != nil {
		t.Fatal(err)
	}
	na, nb := NewQUIC(a, QUICConfig{}), NewQUIC(b, QUICConfig{})
	la, err := na.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := nb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	accepted := make(chan Conn, 1)
	go func() {
		c, err := lb.Accept(ctx)
		if err == nil {
			accepted <- c
		}
	}()
	c, err := na.Dial(ctx, lb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var got Conn
	select {
	case got = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	if got.RemoteAddr() != la.Addr() {
		t.Fatalf("b sees a at %s, want a's listening address %s", got.RemoteAddr(), la.Addr())
	}
	if got.Peer().ID != "a" {
		t.Fatalf("peer %v", got.Peer())
	}
	// The dialed connection keeps the shared socket alive after the listener
	// closes; closing the connection then releases it.
	la.Close()
	if err := c.SendDatagram([]byte("x")); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("datagram after listener close: %v", err)
	}
	c.Close("done")
	got.Close("done")
	lb.Close()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServerDatagrams(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		srv := NewServer(ServerConfig{})
		got := make(chan string, 4)
		srv.HandleDatagrams(func(conn Conn, b []byte) { got <- conn.Peer().ID + ":" + string(b) })
		l, err := tn.server.Listen(tn.listenAddr)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background(), l) }()
		defer func() { srv.Close(); <-done }()
		c := dialClient(t, tn, l.Addr(), ClientConfig{})
		ctx := testCtx(t)
		// Datagrams are unreliable: resend until one arrives.
		for {
			if err := c.Conn().SendDatagram([]byte("beat")); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if want := tn.clientPeer.ID + ":beat"; s != want {
					t.Fatalf("got %q, want %q", s, want)
				}
				return
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal("no datagram delivered")
			}
		}
	})
}

// A server may answer a unary call without reading its request; the client
// gets the answer even though the server stopped reading what it still sent.
func TestUnaryAnswerWithoutReadingRequest(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, tn testNet) {
		addr, _ := startServer(t, tn, ServerConfig{})
		c := dialClient(t, tn, addr, ClientConfig{})
		var out echoMsg
		// 4 MiB cannot fit the stream's window, so the client is still
		// writing when the server answers and stops reading.
		err := c.Call(testCtx(t), "whoami", echoMsg{Blob: make([]byte, 4<<20)}, &out)
		if err != nil {
			t.Fatalf("call answered without reading its request: %v", err)
		}
		if want := string(tn.clientPeer.Role) + "/" + tn.clientPeer.ID; out.Text != want {
			t.Fatalf("got %q, want %q", out.Text, want)
		}
	})
}
