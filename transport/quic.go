package transport

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// QUICConfig tunes the QUIC endpoints. The zero value means the defaults.
type QUICConfig struct {
	MaxIdleTimeout   time.Duration // default 10s
	KeepAlivePeriod  time.Duration // default 2s
	HandshakeTimeout time.Duration // default 5s
}

// Application error codes on the wire. Only the peer's logs see them.
const (
	quicCodeNoError quic.ApplicationErrorCode = 0
	quicCodeAbort   quic.StreamErrorCode      = 1
	quicCodeStop    quic.StreamErrorCode      = 2
)

// QUIC is the real Network: QUIC over UDP with TLS 1.3 mutual
// authentication against the cluster CA, 0-RTT off, datagrams on.
type QUIC struct {
	creds  *Credentials
	config *quic.Config
	reset  *quic.StatelessResetKey

	mu struct {
		sync.Mutex
		listener *quicListener // the socket dials go out from, once listening
	}
}

var _ Network = (*QUIC)(nil)

// NewQUIC returns a QUIC network that authenticates with creds.
func NewQUIC(creds *Credentials, cfg QUICConfig) *QUIC {
	if cfg.MaxIdleTimeout <= 0 {
		cfg.MaxIdleTimeout = 10 * time.Second
	}
	if cfg.KeepAlivePeriod <= 0 {
		cfg.KeepAlivePeriod = 2 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	return &QUIC{
		creds: creds,
		reset: resetKey(creds),
		config: &quic.Config{
			HandshakeIdleTimeout: cfg.HandshakeTimeout,
			MaxIdleTimeout:       cfg.MaxIdleTimeout,
			KeepAlivePeriod:      cfg.KeepAlivePeriod,
			EnableDatagrams:      true,
			Allow0RTT:            false,
		},
	}
}

// Listen listens on a UDP address such as "127.0.0.1:0". Closing the
// listener stops new connections; the UDP socket is released once the
// connections it accepted are gone too.
func (q *QUIC) Listen(addr string) (Listener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: udp, StatelessResetKey: q.reset}
	l, err := tr.Listen(q.creds.serverTLS(), q.config.Clone())
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	ql := &quicListener{l: l, tr: tr, udp: udp}
	q.mu.Lock()
	if q.mu.listener == nil {
		q.mu.listener = ql
	}
	q.mu.Unlock()
	return ql, nil
}

// resetKey derives the stateless reset key from the endpoint's private
// key, so that a node restarted on the same address (a new process that
// knows none of the old connections) makes its peers drop their
// connections to the old process at their next packet, instead of after the
// idle timeout. Without a private key there is no key: resets are off.
func resetKey(creds *Credentials) *quic.StatelessResetKey {
	der, err := x509.MarshalPKCS8PrivateKey(creds.cert.PrivateKey)
	if err != nil {
		return nil
	}
	h := sha256.New()
	h.Write([]byte("gridnode quic stateless reset\x00"))
	h.Write(der)
	var k quic.StatelessResetKey
	copy(k[:], h.Sum(nil))
	return &k
}

// listenerForDial returns the listener whose socket a dial shares, counted
// as a live connection so the socket outlives it, or nil.
func (q *QUIC) listenerForDial() *quicListener {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.mu.listener
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil
	}
	l.mu.live++
	return l
}

// Dial connects to a node at addr. A server whose certificate does not
// chain to our CA fails here; a client rejected by the server may only learn
// so on its first stream (TLS 1.3 verifies the client last).
//
// Once the network listens, dials go out from the listening socket: a node
// then has one UDP address that peers, firewalls and fault proxies can tell
// apart. Before that (a client), each connection has its own socket,
// released when the connection ends.
func (q *QUIC) Dial(ctx context.Context, addr string) (Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if l := q.listenerForDial(); l != nil {
		c, err := l.tr.Dial(ctx, ua, q.creds.clientTLS(), q.config.Clone())
		if err != nil {
			l.connDone()
			return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
		}
		context.AfterFunc(c.Context(), l.connDone)
		qc, err := wrapQUICConn(c)
		if err != nil {
			c.CloseWithError(quicCodeNoError, "bad identity")
			return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
		}
		return qc, nil
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	tr := &quic.Transport{Conn: udp}
	release := func() {
		tr.Close()
		udp.Close()
	}
	c, err := tr.Dial(ctx, ua, q.creds.clientTLS(), q.config.Clone())
	if err != nil {
		release()
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	// Owning the transport (instead of quic.DialAddr) releases the socket as
	// soon as the connection ends, not after its draining period.
	context.AfterFunc(c.Context(), release)
	qc, err := wrapQUICConn(c)
	if err != nil {
		c.CloseWithError(quicCodeNoError, "bad identity")
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	return qc, nil
}

type quicListener struct {
	l   *quic.Listener
	tr  *quic.Transport
	udp *net.UDPConn

	mu struct {
		sync.Mutex
		live     int // accepted connections not yet closed
		closed   bool
		released bool
	}
}

func (l *quicListener) Accept(ctx context.Context) (Conn, error) {
	for {
		c, err := l.l.Accept(ctx)
		if err != nil {
			if errors.Is(err, quic.ErrServerClosed) || errors.Is(err, quic.ErrTransportClosed) {
				return nil, fmt.Errorf("transport: accept on %s: %w", l.Addr(), net.ErrClosed)
			}
			return nil, err
		}
		qc, err := wrapQUICConn(c)
		if err != nil { // unreachable after VerifyConnection, but never trust one layer only
			c.CloseWithError(quicCodeNoError, err.Error())
			continue
		}
		l.mu.Lock()
		l.mu.live++
		l.mu.Unlock()
		context.AfterFunc(c.Context(), l.connDone)
		return qc, nil
	}
}

func (l *quicListener) connDone() {
	l.mu.Lock()
	l.mu.live--
	release := l.releaseLocked()
	l.mu.Unlock()
	release()
}

// releaseLocked returns what to call, outside the lock, to release the
// socket once the listener is closed and its connections are gone.
func (l *quicListener) releaseLocked() func() {
	if !l.mu.closed || l.mu.live > 0 || l.mu.released {
		return func() {}
	}
	l.mu.released = true
	return func() {
		l.tr.Close()
		l.udp.Close()
	}
}

func (l *quicListener) Addr() string { return l.udp.LocalAddr().String() }

func (l *quicListener) Close() error {
	err := l.l.Close()
	l.mu.Lock()
	l.mu.closed = true
	release := l.releaseLocked()
	l.mu.Unlock()
	release()
	return err
}

type quicConn struct {
	c    *quic.Conn
	peer Peer
}

func wrapQUICConn(c *quic.Conn) (*quicConn, error) {
	p, err := PeerFromState(c.ConnectionState().TLS)
	if err != nil {
		return nil, err
	}
	return &quicConn{c: c, peer: p}, nil
}

func (c *quicConn) OpenStream(ctx context.Context) (Stream, error) {
	s, err := c.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{s}, nil
}

func (c *quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := c.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{s}, nil
}

func (c *quicConn) SendDatagram(b []byte) error {
	if len(b) > MaxDatagramSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrDatagramTooLarge, len(b), MaxDatagramSize)
	}
	return c.c.SendDatagram(b)
}

func (c *quicConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return c.c.ReceiveDatagram(ctx)
}

func (c *quicConn) Peer() Peer               { return c.peer }
func (c *quicConn) RemoteAddr() string       { return c.c.RemoteAddr().String() }
func (c *quicConn) Context() context.Context { return c.c.Context() }
func (c *quicConn) Close(reason string) error {
	return c.c.CloseWithError(quicCodeNoError, reason)
}

type quicStream struct{ s *quic.Stream }

func (s quicStream) Read(p []byte) (int, error)    { return s.s.Read(p) }
func (s quicStream) Write(p []byte) (int, error)   { return s.s.Write(p) }
func (s quicStream) Close() error                  { return s.s.Close() }
func (s quicStream) SetDeadline(t time.Time) error { return s.s.SetDeadline(t) }
func (s quicStream) CloseRead()                    { s.s.CancelRead(quicCodeStop) }
func (s quicStream) Context() context.Context      { return s.s.Context() }
func (s quicStream) Abort() {
	s.s.CancelRead(quicCodeAbort)
	s.s.CancelWrite(quicCodeAbort)
}
