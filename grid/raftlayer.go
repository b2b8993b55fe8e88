package grid

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gridnode/gridnode/transport"
	"github.com/hashicorp/raft"
)

// raftMethod is the raw transport method the monitors speak raft on. One
// stream is one raft connection; raft's NetworkTransport frames and pools
// them itself.
const raftMethod = "grid.raft"

// raftLayer is a raft.StreamLayer over our transport: Dial opens a raw
// stream to the raft handler of another monitor, and streams that arrive at
// our handler come out of Accept. Use it as
//
//	layer := newRaftLayer(advertise, open)
//	srv.HandleRaw(raftMethod, layer.handle)
//	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
//		Stream: layer, MaxPool: 3, Timeout: 2 * time.Second, Logger: ...})
//
// Closing the layer (NetworkTransport.Close does, from raft.Shutdown) stops
// Accept and Dial, and streams that arrive later are aborted; conns already
// handed out stay open until raft closes them or the transport server's
// context ends. raft.Shutdown leaves the transport's pooled outgoing conns
// open: call NetworkTransport.CloseStreams after it to release them.
type raftLayer struct {
	advertise string
	open      func(ctx context.Context, addr string) (transport.Stream, error)
	accepted  chan net.Conn   // unbuffered: handle waits for Accept
	ctx       context.Context // done once Close is called
	stop      context.CancelFunc
}

var _ raft.StreamLayer = (*raftLayer)(nil)

// newRaftLayer returns a layer for the monitor other monitors dial at
// advertise. open opens a raw stream to the raft handler of the node at addr;
// in production a pooled transport.Client's OpenRaw(ctx, raftMethod).
func newRaftLayer(advertise string, open func(ctx context.Context, addr string) (transport.Stream, error)) *raftLayer {
	l := &raftLayer{advertise: advertise, open: open, accepted: make(chan net.Conn)}
	l.ctx, l.stop = context.WithCancel(context.Background())
	return l
}

// handle is the transport.RawHandlerFunc for raftMethod. Only nodes speak
// raft: a client's stream is aborted at once. Otherwise the stream goes to
// Accept as a net.Conn, and handle returns once that conn is closed, or
// aborts the stream when ctx ends (the connection or the server went away).
func (l *raftLayer) handle(ctx context.Context, peer transport.Peer, st transport.Stream) {
	if peer.Role != transport.RoleNode {
		st.Abort()
		return
	}
	c := newRaftConn(st, l.advertise, peer.String())
	select {
	case l.accepted <- c:
	case <-l.ctx.Done():
		c.abort()
		return
	case <-ctx.Done():
		c.abort()
		return
	}
	select {
	case <-c.closed:
	case <-ctx.Done():
		c.abort()
	}
}

// Accept waits for the next raft connection from another monitor. After
// Close it fails with an error wrapping net.ErrClosed.
func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("grid: raft layer %s: accept: %w", l.advertise, net.ErrClosed)
	}
}

// Close unblocks Accept and stops Dial. It closes no connection.
func (l *raftLayer) Close() error {
	l.stop()
	return nil
}

// Addr is the address other monitors dial.
func (l *raftLayer) Addr() net.Addr { return raftAddr(l.advertise) }

// Dial opens a raft connection to the monitor at address. timeout bounds
// only the opening, as for net.DialTimeout; raft sets deadlines itself.
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.ctx.Err() != nil {
		return nil, fmt.Errorf("grid: raft dial %s: %w", address, net.ErrClosed)
	}
	ctx := l.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	st, err := l.open(ctx, string(address))
	if err != nil {
		return nil, fmt.Errorf("grid: raft dial %s: %w", address, err)
	}
	return newRaftConn(st, l.advertise, string(address)), nil
}

// raftAddr is a monitor's address as raft and net.Conn see it.
type raftAddr string

func (a raftAddr) Network() string { return "grid" }
func (a raftAddr) String() string  { return string(a) }

// streamReadCloser is implemented by both transport streams (memory and
// QUIC), though transport.Stream does not say so: it stops the peer's sending
// (QUIC STOP_SENDING) without touching our send side.
type streamReadCloser interface{ CloseRead() }

// raftConn is a net.Conn over a transport stream.
//
// Deadlines: a stream has one deadline for both directions. raft's
// NetworkTransport calls SetDeadline before each plain RPC and
// InstallSnapshot, and in its AppendEntries pipeline SetWriteDeadline before
// each send and SetReadDeadline (another goroutine) before each response. We
// keep both and give the stream the later of the two, where an unset (zero)
// deadline has no say unless both are unset: raft never clears a deadline,
// and a fresh pipeline conn gets its write deadline before any read deadline.
// So an operation never times out before its own deadline, but may time out
// later, by at most one raft Timeout, when the other direction renewed its
// deadline in between. Raft drops the conn on any error, so a late timeout
// only delays that.
type raftConn struct {
	st            transport.Stream
	local, remote raftAddr

	once   sync.Once
	closed chan struct{}

	mu struct {
		sync.Mutex
		read, write time.Time
	}
}

var _ net.Conn = (*raftConn)(nil)

func newRaftConn(st transport.Stream, local, remote string) *raftConn {
	return &raftConn{st: st, local: raftAddr(local), remote: raftAddr(remote), closed: make(chan struct{})}
}

func (c *raftConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *raftConn) Read(b []byte) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	return c.st.Read(b)
}

func (c *raftConn) Write(b []byte) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	return c.st.Write(b)
}

// Close closes both directions without discarding what we wrote: our side is
// half-closed (FIN after the data already written, which is still delivered)
// and we stop reading (the peer's writes fail). A stream that cannot stop
// reading on its own is aborted instead, which may drop unsent data; both of
// our transports can. Reads and writes after Close fail with net.ErrClosed.
func (c *raftConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.st.Close()
		if rc, ok := c.st.(streamReadCloser); ok {
			rc.CloseRead()
		} else {
			c.st.Abort()
		}
		close(c.closed)
	})
	return err
}

// abort resets the stream both ways, unless the conn is already closed.
func (c *raftConn) abort() {
	c.once.Do(func() {
		c.st.Abort()
		close(c.closed)
	})
}

func (c *raftConn) LocalAddr() net.Addr  { return c.local }
func (c *raftConn) RemoteAddr() net.Addr { return c.remote }

func (c *raftConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.read, c.mu.write = t, t
	return c.st.SetDeadline(t)
}

func (c *raftConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.read = t
	return c.st.SetDeadline(laterDeadline(c.mu.read, c.mu.write))
}

func (c *raftConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.write = t
	return c.st.SetDeadline(laterDeadline(c.mu.read, c.mu.write))
}

// laterDeadline is the later of two deadlines; a zero one counts only when
// both are zero.
func laterDeadline(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
