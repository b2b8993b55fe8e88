package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Wire protocol of a call, one stream per call. Every frame body starts with
// one type byte followed by CBOR:
//
//	client → server: 'H' {1: method}, then 'M' messages, then FIN
//	server → client: 'M' messages, then FIN (success) or one 'E' *Error and FIN
//
// A server that stops early also stops reading (QUIC STOP_SENDING), so a
// client blocked on a large write learns at once that the call is over.
const (
	frameHeader  byte = 'H'
	frameMessage byte = 'M'
	frameError   byte = 'E'
)

const (
	maxHeaderFrame     = 4 << 10
	headerTimeout      = 10 * time.Second
	errorWriteTimeout  = 5 * time.Second
	defaultMaxCalls    = 1024
	maxMethodNameBytes = 256
)

// ErrServerClosed is returned by Serve after Close or when its ctx is done.
var ErrServerClosed = errors.New("transport: server closed")

type callHeader struct {
	Method string `cbor:"1,keyasint"`
}

// writeTyped writes one frame of type typ with body, in a single Write.
func writeTyped(w io.Writer, typ byte, body []byte) error {
	buf := make([]byte, frameHeaderLen+1+len(body))
	n := uint32(1 + len(body))
	buf[0], buf[1], buf[2], buf[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	buf[4] = typ
	copy(buf[5:], body)
	_, err := w.Write(buf)
	return err
}

// encodeTyped marshals v and checks that the frame fits max.
func encodeTyped(v any, max int, what string) ([]byte, error) {
	body, err := Marshal(v)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "encode %s: %v", what, err)
	}
	if 1+len(body) > max {
		return nil, Errorf(CodeTooLarge, "%s of %d bytes exceeds the %d-byte frame limit", what, 1+len(body), max)
	}
	return body, nil
}

// HandlerFunc serves one call. A returned error is sent to the client as an
// error frame: an *Error as is, anything else as CodeInternal with its text.
// ctx is cancelled when the connection or the server goes away, and when
// the client aborts the call.
type HandlerFunc func(ctx context.Context, call *ServerCall) error

// ServerConfig configures a Server. The zero value means the defaults.
type ServerConfig struct {
	MaxFrame           int          // largest frame accepted or sent; default DefaultMaxFrame
	Logger             *slog.Logger // default: discard
	MaxConcurrentCalls int          // calls in flight across all connections; default 1024
}

// Server dispatches calls arriving on accepted connections to handlers.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	slots  chan struct{}
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every Serve

	mu struct {
		sync.Mutex
		handlers map[string]HandlerFunc
		raw      map[string]RawHandlerFunc
		dgram    DatagramFunc
		closed   bool
	}
}

// DatagramFunc receives one datagram that arrived on conn. It runs on the
// connection's datagram reader and must not block.
type DatagramFunc func(conn Conn, b []byte)

// HandleDatagrams makes every connection accepted from now on deliver its
// datagrams to h.
func (s *Server) HandleDatagrams(h DatagramFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.dgram = h
}

// ReadDatagrams delivers conn's datagrams to h until ctx is done or the
// connection is gone.
func ReadDatagrams(ctx context.Context, conn Conn, h DatagramFunc) {
	for {
		b, err := conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		h(conn, b)
	}
}

// RawHandlerFunc owns a stream once its call header is read: it speaks its
// own byte protocol on it and must Close or Abort the stream before it
// returns. ctx ends when the connection or the server goes away.
type RawHandlerFunc func(ctx context.Context, peer Peer, st Stream)

// NewServer returns a server with no handlers.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.MaxConcurrentCalls <= 0 {
		cfg.MaxConcurrentCalls = defaultMaxCalls
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, slots: make(chan struct{}, cfg.MaxConcurrentCalls)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.handlers = make(map[string]HandlerFunc)
	s.mu.raw = make(map[string]RawHandlerFunc)
	return s
}

func checkMethod(method string) {
	if method == "" || len(method) > maxMethodNameBytes {
		panic(fmt.Sprintf("transport: invalid method name %q", method))
	}
}

// HandleRaw registers h for method, replacing any earlier handler: streams
// opened with Client.OpenRaw(method) are handed to it as they are.
func (s *Server) HandleRaw(method string, h RawHandlerFunc) {
	checkMethod(method)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.raw[method] = h
}

func (s *Server) rawHandler(method string) RawHandlerFunc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.raw[method]
}

// Handle registers h for method, replacing any earlier handler.
func (s *Server) Handle(method string, h HandlerFunc) {
	checkMethod(method)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.handlers[method] = h
}

func (s *Server) handler(method string) HandlerFunc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.handlers[method]
}

// Serve accepts connections on l until ctx is done or Close is called, then
// closes l and every connection it accepted, and waits for their handlers.
// It returns ErrServerClosed in those cases, or the error that broke Accept.
func (s *Server) Serve(ctx context.Context, l Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	var wg sync.WaitGroup
	var err error
	for {
		conn, aerr := l.Accept(ctx)
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("transport: serve %s: %w", l.Addr(), aerr)
			}
			break
		}
		wg.Go(func() { s.serveConn(ctx, conn, &wg) })
	}
	cancel()
	l.Close()
	wg.Wait()
	if err != nil {
		return err
	}
	return ErrServerClosed
}

// Close stops every Serve and waits for them to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) serveConn(ctx context.Context, conn Conn, wg *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(conn.Context(), cancel)
	defer stop()
	peer := conn.Peer()
	s.mu.Lock()
	dgram := s.mu.dgram
	s.mu.Unlock()
	if dgram != nil {
		wg.Go(func() { ReadDatagrams(ctx, conn, dgram) })
	}
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			break
		}
		select {
		case s.slots <- struct{}{}:
			wg.Go(func() {
				defer func() { <-s.slots }()
				s.serveCall(ctx, peer, st)
			})
		default:
			wg.Go(func() {
				s.finish(st, Errorf(CodeUnavailable, "server is at its limit of %d concurrent calls; retry later", s.cfg.MaxConcurrentCalls))
			})
		}
	}
	if ctx.Err() != nil {
		conn.Close("server shutting down")
	} else {
		conn.Close("connection closed")
	}
}

func (s *Server) serveCall(ctx context.Context, peer Peer, st Stream) {
	st.SetDeadline(time.Now().Add(headerTimeout))
	body, err := ReadFrame(st, maxHeaderFrame)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			s.finish(st, Errorf(CodeTooLarge, "call header: %v", err))
			return
		}
		// The client went away or sent a partial header; nobody to answer.
		st.Abort()
		return
	}
	var hdr callHeader
	if len(body) == 0 || body[0] != frameHeader {
		s.log.Debug("transport: bad call header", "peer", peer.String())
		s.finish(st, Errorf(CodeBadFrame, "a call must start with a header frame"))
		return
	}
	if err := Unmarshal(body[1:], &hdr); err != nil || hdr.Method == "" {
		s.finish(st, Errorf(CodeBadFrame, "malformed call header: %v", err))
		return
	}
	st.SetDeadline(time.Time{})
	if raw := s.rawHandler(hdr.Method); raw != nil {
		s.runRaw(ctx, raw, peer, hdr.Method, st)
		return
	}
	h := s.handler(hdr.Method)
	if h == nil {
		s.finish(st, Errorf(CodeUnknownMethod, "no handler for method %q on this server", truncate(hdr.Method, maxMethodNameBytes)))
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sctx := streamContext(st); sctx != nil {
		// The client aborted the call (or stopped reading our responses).
		defer context.AfterFunc(sctx, cancel)()
	}
	call := &ServerCall{ctx: ctx, cancel: cancel, stream: st, peer: peer, method: hdr.Method, maxFrame: s.cfg.MaxFrame}
	s.finish(st, s.run(ctx, h, call))
}

// run calls the handler, turning a panic into CodeInternal.
func (s *Server) run(ctx context.Context, h HandlerFunc, call *ServerCall) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("transport: handler panicked", "method", call.method, "peer", call.peer.String(), "panic", r, "stack", string(debug.Stack()))
			err = Errorf(CodeInternal, "handler for %q failed unexpectedly; see the server log", call.method)
		}
	}()
	return h(ctx, call)
}

// runRaw hands st to a raw handler, aborting the stream if it panics.
func (s *Server) runRaw(ctx context.Context, h RawHandlerFunc, peer Peer, method string, st Stream) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("transport: raw handler panicked", "method", method, "peer", peer.String(), "panic", r, "stack", string(debug.Stack()))
			st.Abort()
		}
	}()
	h(ctx, peer, st)
}

// finish ends a call from the server side: the error frame if any, FIN, and
// stop reading whatever the client still sends.
func (s *Server) finish(st Stream, err error) {
	if err != nil {
		we := toWireError(err)
		if body, merr := Marshal(we); merr == nil {
			st.SetDeadline(time.Now().Add(errorWriteTimeout))
			if werr := writeTyped(st, frameError, body); werr != nil {
				s.log.Debug("transport: cannot deliver error frame", "code", we.Code, "err", werr)
			}
		}
	}
	st.Close()
	closeRead(st)
}

// ServerCall is the server side of one call.
type ServerCall struct {
	ctx      context.Context
	cancel   context.CancelFunc
	stream   Stream
	peer     Peer
	method   string
	maxFrame int
	recvErr  error // sticky: the request side is over or unusable
}

// Peer is the authenticated caller.
func (c *ServerCall) Peer() Peer { return c.peer }

// Method is the method the client called.
func (c *ServerCall) Method() string { return c.method }

// Recv decodes the next request message into v. It returns io.EOF once the
// client has half-closed, *Error{CodeTooLarge} or *Error{CodeBadFrame} for
// a frame the server will not take, and a transport error when the client
// went away (which also cancels the handler's ctx).
func (c *ServerCall) Recv(v any) error {
	if c.recvErr != nil {
		return c.recvErr
	}
	body, err := ReadFrame(c.stream, c.maxFrame)
	switch {
	case err == io.EOF:
		c.recvErr = io.EOF
		return io.EOF
	case errors.Is(err, ErrFrameTooLarge):
		c.recvErr = Errorf(CodeTooLarge, "request to %q: %v", c.method, err)
		closeRead(c.stream)
		return c.recvErr
	case err != nil:
		c.recvErr = Errorf(CodeCancelled, "request stream of %q broke: %v", c.method, err)
		c.cancel()
		return c.recvErr
	case len(body) == 0 || body[0] != frameMessage:
		c.recvErr = Errorf(CodeBadFrame, "request to %q: unexpected frame", c.method)
		closeRead(c.stream)
		return c.recvErr
	}
	if err := Unmarshal(body[1:], v); err != nil {
		return Errorf(CodeBadFrame, "request to %q: %v", c.method, err)
	}
	return nil
}

// Send sends one response message.
func (c *ServerCall) Send(v any) error {
	body, err := encodeTyped(v, c.maxFrame, "response to "+c.method)
	if err != nil {
		return err
	}
	if err := writeTyped(c.stream, frameMessage, body); err != nil {
		c.cancel()
		return fmt.Errorf("transport: send response to %q: %w", c.method, err)
	}
	return nil
}

// ClientConfig configures a Client. The zero value means the defaults.
type ClientConfig struct {
	MaxFrame int // largest frame sent or accepted; default DefaultMaxFrame
}

// Client makes calls over one connection. It is safe for concurrent use.
type Client struct {
	conn     Conn
	maxFrame int
}

// NewClient makes calls over conn. The client owns conn from now on.
func NewClient(conn Conn, cfg ClientConfig) *Client {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	return &Client{conn: conn, maxFrame: cfg.MaxFrame}
}

// Dial connects to addr on n and returns a client for the connection.
func Dial(ctx context.Context, n Network, addr string, cfg ClientConfig) (*Client, error) {
	conn, err := n.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, cfg), nil
}

// Conn is the connection the client calls over.
func (c *Client) Conn() Conn { return c.conn }

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.conn.Close("client closed") }

// Call sends req to method and decodes the single response into resp. An
// error from the server is returned as the *Error it sent.
func (c *Client) Call(ctx context.Context, method string, req, resp any) error {
	s, err := c.Stream(ctx, method)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Send(req); err != nil {
		if CodeOf(err) == CodeTooLarge {
			return err // refused locally, nothing was sent
		}
		// The server may have ended the call early: with an error (unknown
		// method, too large...), whose reason beats our write error, or
		// with its answer, without reading the request.
		switch rerr := s.Recv(resp); rerr {
		case nil:
			return nil
		case io.EOF:
			return err
		default:
			return rerr
		}
	}
	// A server that already answered may have stopped reading, which makes
	// the close fail; the answer, or the real failure, comes from Recv.
	s.CloseSend()
	switch err := s.Recv(resp); err {
	case nil:
	case io.EOF:
		return Errorf(CodeInternal, "%q finished without a response", method)
	default:
		return err
	}
	switch err := s.recv(nil); err {
	case io.EOF:
		return nil
	case nil:
		return Errorf(CodeBadFrame, "%q sent more than one response to a unary call", method)
	default:
		return err
	}
}

// OpenRaw opens a stream to the raw handler of method and returns it after
// the call header: from then on the two sides speak their own protocol.
// ctx bounds only the opening.
func (c *Client) OpenRaw(ctx context.Context, method string) (Stream, error) {
	hdr, err := encodeTyped(callHeader{Method: method}, maxHeaderFrame, "call header")
	if err != nil {
		return nil, err
	}
	st, err := c.conn.OpenStream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("transport: open %q: %w", method, ctx.Err())
		}
		return nil, Errorf(CodeUnavailable, "open %q: %v", method, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	if err := writeTyped(st, frameHeader, hdr); err != nil {
		st.Abort()
		return nil, Errorf(CodeUnavailable, "open %q: %v", method, err)
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

// Stream starts a streaming call. ctx bounds the whole call; Close must be
// called when done with it.
func (c *Client) Stream(ctx context.Context, method string) (*ClientStream, error) {
	hdr, err := encodeTyped(callHeader{Method: method}, maxHeaderFrame, "call header")
	if err != nil {
		return nil, err
	}
	st, err := c.conn.OpenStream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("transport: call %q: %w", method, ctx.Err())
		}
		return nil, Errorf(CodeUnavailable, "call %q: open stream: %v", method, err)
	}
	s := &ClientStream{ctx: ctx, stream: st, method: method, maxFrame: c.maxFrame}
	s.stop = context.AfterFunc(ctx, st.Abort)
	if err := writeTyped(st, frameHeader, hdr); err != nil {
		s.Close()
		return nil, s.fail(err)
	}
	return s, nil
}

// ClientStream is the client side of one streaming call. One goroutine may
// Send while another Recvs.
type ClientStream struct {
	ctx      context.Context
	stream   Stream
	stop     func() bool
	method   string
	maxFrame int

	sendClosed bool
	end        error // sticky: io.EOF, the server's *Error, or a transport failure
}

// Send sends one request message. If it fails because the server already
// ended the call, Recv returns the server's reason.
func (s *ClientStream) Send(v any) error {
	body, err := encodeTyped(v, s.maxFrame, "request to "+s.method)
	if err != nil {
		return err
	}
	if err := writeTyped(s.stream, frameMessage, body); err != nil {
		return s.fail(err)
	}
	return nil
}

// CloseSend tells the server no more requests follow. It fails if the
// server already ended the call; Recv then returns how it ended.
func (s *ClientStream) CloseSend() error {
	s.sendClosed = true
	if err := s.stream.Close(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Recv decodes the next response into v. It returns io.EOF when the server
// finished normally and the server's *Error when it ended with one.
func (s *ClientStream) Recv(v any) error {
	if v == nil {
		return errors.New("transport: Recv needs a pointer to decode into")
	}
	return s.recv(v)
}

// recv with v == nil expects the end of the call.
func (s *ClientStream) recv(v any) error {
	if s.end != nil {
		return s.end
	}
	body, err := ReadFrame(s.stream, s.maxFrame)
	switch {
	case err == io.EOF:
		s.end = io.EOF
		return io.EOF
	case errors.Is(err, ErrFrameTooLarge):
		s.stream.Abort()
		s.end = Errorf(CodeTooLarge, "response from %q: %v", s.method, err)
		return s.end
	case err != nil:
		s.end = s.fail(err)
		return s.end
	case len(body) == 0:
		s.stream.Abort()
		s.end = Errorf(CodeBadFrame, "response from %q: empty frame", s.method)
		return s.end
	}
	switch body[0] {
	case frameError:
		e := new(Error)
		if err := Unmarshal(body[1:], e); err != nil {
			s.end = Errorf(CodeBadFrame, "malformed error from %q: %v", s.method, err)
		} else {
			if e.Code == "" {
				e.Code = CodeInternal
			}
			s.end = e
		}
		s.stream.Abort() // the call is over; release our send side too
		return s.end
	case frameMessage:
		if v == nil {
			return nil
		}
		if err := Unmarshal(body[1:], v); err != nil {
			return Errorf(CodeBadFrame, "response from %q: %v", s.method, err)
		}
		return nil
	default:
		s.stream.Abort()
		s.end = Errorf(CodeBadFrame, "response from %q: unknown frame type 0x%02x", s.method, body[0])
		return s.end
	}
}

// fail converts a transport error into what the caller should see: the
// context's error if the call was cancelled, else CodeUnavailable.
func (s *ClientStream) fail(err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return fmt.Errorf("transport: call %q: %w", s.method, cerr)
	}
	return Errorf(CodeUnavailable, "call %q: connection to the server broke: %v", s.method, err)
}

// Close ends the call, aborting it if it has not finished both ways.
func (s *ClientStream) Close() {
	s.stop()
	if !(s.sendClosed && s.end == io.EOF) {
		s.stream.Abort()
	}
}
