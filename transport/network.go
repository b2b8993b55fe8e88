package transport

import (
	"context"
	"errors"
	"io"
	"time"
)

// MaxDatagramSize is the largest datagram payload every implementation
// accepts. It fits a QUIC DATAGRAM frame in a 1200-byte packet, the smallest
// any QUIC path must carry, so a heartbeat that fits here fits everywhere.
const MaxDatagramSize = 1100

// ErrDatagramTooLarge is returned by SendDatagram for payloads over
// MaxDatagramSize.
var ErrDatagramTooLarge = errors.New("transport: datagram too large")

// Network dials and listens. QUIC is the real one; MemNetwork is the
// in-memory one with fault controls for tests.
type Network interface {
	Listen(addr string) (Listener, error)
	Dial(ctx context.Context, addr string) (Conn, error)
}

// Listener accepts authenticated connections.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	// Addr is the address others dial, with the real port after ":0".
	Addr() string
	Close() error
}

// Conn is an authenticated, multiplexed connection.
type Conn interface {
	// OpenStream opens a bidirectional stream. The peer's AcceptStream
	// may only see it once the first byte is written.
	OpenStream(ctx context.Context) (Stream, error)
	AcceptStream(ctx context.Context) (Stream, error)
	// SendDatagram is unreliable: datagrams may be dropped or reordered.
	// Payloads over MaxDatagramSize fail with ErrDatagramTooLarge.
	SendDatagram(b []byte) error
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// Peer is the authenticated identity of the other side.
	Peer() Peer
	RemoteAddr() string
	// Close tears the connection down; data not yet delivered may be lost.
	Close(reason string) error
	// Context is done when the connection is gone, for whatever reason.
	Context() context.Context
}

// Stream is one reliable, ordered, bidirectional byte stream.
type Stream interface {
	io.Reader
	io.Writer
	// Close half-closes: we are done sending; reading still works.
	Close() error
	// Abort resets both directions; pending data is discarded.
	Abort()
	SetDeadline(t time.Time) error
}

// readCloser is implemented by both of our streams: it tells the peer to
// stop sending (QUIC STOP_SENDING) without touching our send side, so a
// final error frame can still be delivered.
type readCloser interface {
	CloseRead()
}

// streamContexter is implemented by both of our streams: the context ends
// when our send side is finished, including when the peer asked us to stop
// sending or reset the stream. The server uses it to cancel a handler whose
// client gave up.
type streamContexter interface {
	Context() context.Context
}

func streamContext(s Stream) context.Context {
	if sc, ok := s.(streamContexter); ok {
		return sc.Context()
	}
	return nil
}

func closeRead(s Stream) {
	if rc, ok := s.(readCloser); ok {
		rc.CloseRead()
	}
}
