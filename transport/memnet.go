package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemNetwork limits. They mirror what QUIC bounds for us in the real network.
const (
	memStreamWindow   = 1 << 20 // bytes in flight per stream direction before writes block
	memDatagramQueue  = 256     // undelivered datagrams per connection before drops
	memAcceptBacklog  = 128     // unaccepted connections per listener before refusals
	memStreamBacklog  = 1024    // unaccepted streams per connection before OpenStream blocks
	memDialTimeout    = 5 * time.Second
	memFirstEphemeral = 40000
)

// Errors of the in-memory network.
var (
	ErrUnreachable = errors.New("transport: host unreachable")
	errMemRefused  = errors.New("transport: connection refused")
	errStreamReset = errors.New("transport: stream reset by peer")
	errStopSending = errors.New("transport: peer stopped reading the stream")
	errLocalAbort  = errors.New("transport: stream aborted")
	errWriteClosed = errors.New("transport: write on a closed stream")
	errReadClosed  = errors.New("transport: read on a stream whose read side is closed")
)

// MemNetwork is an in-memory Network with fault controls: per-direction
// delay, datagram loss and partitions. It starts no goroutines and blocks only
// on channels and timers, so it runs inside a testing/synctest bubble, where
// delays are exact in virtual time. Create it inside the bubble that uses it.
//
// It authenticates nothing: each host declares its own Peer.
type MemNetwork struct {
	seed int64

	mu struct {
		sync.Mutex
		rng       *rand.Rand
		links     map[[2]string]memLink
		group     map[string]int // host → partition group; absent = group -1
		listeners map[string]*memListener
		nextPort  int
		changed   chan struct{} // closed and replaced on every topology change
		drops     int
	}
}

type memLink struct {
	delay time.Duration
	loss  float64
}

// NewMemNetwork returns an empty network whose random choices (datagram
// loss) follow seed, so a failing run can be replayed.
func NewMemNetwork(seed int64) *MemNetwork {
	m := &MemNetwork{seed: seed}
	m.mu.rng = rand.New(rand.NewPCG(uint64(seed), 0x6772_6964_6e6f_6465))
	m.mu.links = make(map[[2]string]memLink)
	m.mu.group = make(map[string]int)
	m.mu.listeners = make(map[string]*memListener)
	m.mu.nextPort = memFirstEphemeral
	m.mu.changed = make(chan struct{})
	return m
}

// Seed returns the seed the network was created with.
func (m *MemNetwork) Seed() int64 { return m.seed }

// Host returns the network as seen from host name, which presents itself to
// peers as self. Addresses are host names ("n1") or "n1:port".
func (m *MemNetwork) Host(name string, self Peer) Network {
	if name == "" || strings.Contains(name, ":") {
		panic(fmt.Sprintf("transport: invalid MemNetwork host name %q", name))
	}
	return &memHost{net: m, name: name, self: self}
}

// SetDelay sets the one-way delay from host a to host b.
func (m *MemNetwork) SetDelay(a, b string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.mu.links[[2]string{a, b}]
	l.delay = d
	m.mu.links[[2]string{a, b}] = l
	m.changedLocked()
}

// SetLoss sets the probability that a datagram from a to b is dropped.
// Streams stay reliable.
func (m *MemNetwork) SetLoss(a, b string, p float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.mu.links[[2]string{a, b}]
	l.loss = p
	m.mu.links[[2]string{a, b}] = l
	m.changedLocked()
}

// Partition splits the hosts into groups that cannot reach each other: dials
// fail, datagrams are dropped, stream writes stall until Heal. Hosts named in
// no group form one more group together. A new Partition replaces the last.
func (m *MemNetwork) Partition(groups ...[]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.group = make(map[string]int)
	for i, g := range groups {
		for _, h := range g {
			m.mu.group[h] = i
		}
	}
	m.changedLocked()
}

// Heal removes any partition.
func (m *MemNetwork) Heal() { m.Partition() }

// DroppedDatagrams counts datagrams lost to loss, partitions or full queues.
func (m *MemNetwork) DroppedDatagrams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.drops
}

func (m *MemNetwork) changedLocked() {
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
}

// path reports whether a can reach b now, the a→b delay, and a channel that
// is closed at the next topology change.
func (m *MemNetwork) path(a, b string) (ok bool, delay time.Duration, changed <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reachableLocked(a, b), m.mu.links[[2]string{a, b}].delay, m.mu.changed
}

func (m *MemNetwork) reachableLocked(a, b string) bool {
	ga, oka := m.mu.group[a]
	gb, okb := m.mu.group[b]
	if !oka {
		ga = -1
	}
	if !okb {
		gb = -1
	}
	return ga == gb
}

// datagramFate decides, with the seeded generator, whether a datagram a→b is
// delivered, and after what delay.
func (m *MemNetwork) datagramFate(a, b string) (deliver bool, delay time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.mu.links[[2]string{a, b}]
	if !m.reachableLocked(a, b) {
		m.mu.drops++
		return false, 0
	}
	if l.loss > 0 && m.mu.rng.Float64() < l.loss {
		m.mu.drops++
		return false, 0
	}
	return true, l.delay
}

func (m *MemNetwork) countDrop() {
	m.mu.Lock()
	m.mu.drops++
	m.mu.Unlock()
}

// memHost is the network as seen from one host.
type memHost struct {
	net  *MemNetwork
	name string
	self Peer
}

func splitMemAddr(addr string) (host, port string) {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

func (h *memHost) Listen(addr string) (Listener, error) {
	host, port := splitMemAddr(addr)
	if host == "" {
		host = h.name
	}
	if host != h.name {
		return nil, fmt.Errorf("transport: host %s cannot listen on %q: it belongs to %s", h.name, addr, host)
	}
	m := h.net
	m.mu.Lock()
	defer m.mu.Unlock()
	var key string
	switch {
	case port == "":
		key = host
	case port == "0":
		for {
			key = host + ":" + strconv.Itoa(m.mu.nextPort)
			m.mu.nextPort++
			if m.mu.listeners[key] == nil {
				break
			}
		}
	default:
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("transport: listen on %q: bad port", addr)
		}
		key = addr
	}
	if m.mu.listeners[key] != nil {
		return nil, fmt.Errorf("transport: listen on %s: address already in use", key)
	}
	l := &memListener{host: h, addr: key, wake: make(chan struct{}), done: make(chan struct{})}
	m.mu.listeners[key] = l
	return l, nil
}

func (h *memHost) Dial(ctx context.Context, addr string) (Conn, error) {
	m := h.net
	host, port := splitMemAddr(addr)
	if port == "0" || host == "" {
		return nil, fmt.Errorf("transport: dial %q: not a dialable address", addr)
	}
	fail := func(err error) (Conn, error) {
		return nil, fmt.Errorf("transport: dial %s from %s: %w", addr, h.name, err)
	}

	okThere, there, _ := m.path(h.name, host)
	okBack, back, _ := m.path(host, h.name)
	if !okThere || !okBack {
		// As over UDP: nothing answers, and the attempt times out.
		if err := sleepCtx(ctx, memDialTimeout); err != nil {
			return fail(err)
		}
		return fail(ErrUnreachable)
	}
	// One round trip for the handshake.
	if err := sleepCtx(ctx, there+back); err != nil {
		return fail(err)
	}
	m.mu.Lock()
	l := m.mu.listeners[addr]
	m.mu.Unlock()
	if l == nil {
		return fail(errMemRefused)
	}
	m.mu.Lock()
	port2 := m.mu.nextPort
	m.mu.nextPort++
	m.mu.Unlock()
	client, server := newMemConnPair(m, h, addr, l.host, h.name+":"+strconv.Itoa(port2))
	if !l.enqueue(server) {
		client.Close("refused")
		return fail(errMemRefused)
	}
	return client, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type memListener struct {
	host *memHost
	addr string

	mu      sync.Mutex
	backlog []*memConn
	closed  bool
	wake    chan struct{}
	done    chan struct{}
}

func (l *memListener) enqueue(c *memConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.backlog) >= memAcceptBacklog {
		return false
	}
	l.backlog = append(l.backlog, c)
	close(l.wake)
	l.wake = make(chan struct{})
	return true
}

func (l *memListener) Accept(ctx context.Context) (Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, fmt.Errorf("transport: accept on %s: %w", l.addr, net.ErrClosed)
		}
		if len(l.backlog) > 0 {
			c := l.backlog[0]
			l.backlog[0] = nil
			l.backlog = l.backlog[1:]
			l.mu.Unlock()
			return c, nil
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *memListener) Addr() string { return l.addr }

func (l *memListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	backlog := l.backlog
	l.backlog = nil
	close(l.done)
	l.mu.Unlock()
	for _, c := range backlog {
		c.Close("listener closed")
	}
	m := l.host.net
	m.mu.Lock()
	if m.mu.listeners[l.addr] == l {
		delete(m.mu.listeners, l.addr)
	}
	m.mu.Unlock()
	return nil
}

// memConnShared is the state both ends of a connection agree on.
type memConnShared struct {
	once   sync.Once
	done   chan struct{}
	reason string // written once before done is closed
}

func (s *memConnShared) err() error {
	return fmt.Errorf("transport: connection closed: %s", s.reason)
}

type memConn struct {
	net        *MemNetwork
	local      string // host name
	remote     string // host name
	remoteAddr string
	peer       Peer
	shared     *memConnShared
	other      *memConn
	ctx        context.Context
	cancel     context.CancelFunc

	mu struct {
		sync.Mutex
		streams []pending[*memStream] // opened by the peer, not yet accepted
		dgrams  []pending[[]byte]     // sorted by arrival time
		wake    chan struct{}
	}
}

type pending[T any] struct {
	at time.Time
	v  T
}

func newMemConnPair(m *MemNetwork, dialer *memHost, dialedAddr string, server *memHost, dialerAddr string) (client, srv *memConn) {
	shared := &memConnShared{done: make(chan struct{})}
	mk := func(local, remote *memHost, remoteAddr string) *memConn {
		c := &memConn{net: m, local: local.name, remote: remote.name, remoteAddr: remoteAddr, peer: remote.self, shared: shared}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		c.mu.wake = make(chan struct{})
		return c
	}
	client = mk(dialer, server, dialedAddr)
	srv = mk(server, dialer, dialerAddr)
	client.other, srv.other = srv, client
	return client, srv
}

func (c *memConn) notifyLocked() {
	close(c.mu.wake)
	c.mu.wake = make(chan struct{})
}

func (c *memConn) closed() bool {
	select {
	case <-c.shared.done:
		return true
	default:
		return false
	}
}

func (c *memConn) OpenStream(ctx context.Context) (Stream, error) {
	for {
		if c.closed() {
			return nil, c.shared.err()
		}
		o := c.other
		o.mu.Lock()
		if len(o.mu.streams) < memStreamBacklog {
			_, delay, _ := c.net.path(c.local, c.remote)
			mine, theirs := newMemStreamPair(c, o)
			o.mu.streams = append(o.mu.streams, pending[*memStream]{at: time.Now().Add(delay), v: theirs})
			o.notifyLocked()
			o.mu.Unlock()
			return mine, nil
		}
		wake := o.mu.wake
		o.mu.Unlock()
		select {
		case <-wake:
		case <-c.shared.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *memConn) AcceptStream(ctx context.Context) (Stream, error) {
	for {
		if c.closed() {
			return nil, c.shared.err()
		}
		c.mu.Lock()
		var next time.Time
		if len(c.mu.streams) > 0 {
			p := c.mu.streams[0]
			if !p.at.After(time.Now()) {
				c.mu.streams[0] = pending[*memStream]{}
				c.mu.streams = c.mu.streams[1:]
				c.notifyLocked() // an opener may wait for backlog room
				c.mu.Unlock()
				return p.v, nil
			}
			next = p.at
		}
		wake := c.mu.wake
		c.mu.Unlock()
		if err := waitUntil(ctx, wake, c.shared.done, next, nil); err != nil {
			return nil, err
		}
	}
}

// waitUntil blocks until wake or done is closed, the time at (if non-zero)
// has come, ctx is done, or extra (if non-nil) is closed.
func waitUntil(ctx context.Context, wake, done <-chan struct{}, at time.Time, extra <-chan struct{}) error {
	var timer <-chan time.Time
	if !at.IsZero() {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-wake:
	case <-done:
	case <-timer:
	case <-extra:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (c *memConn) SendDatagram(b []byte) error {
	if len(b) > MaxDatagramSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrDatagramTooLarge, len(b), MaxDatagramSize)
	}
	if c.closed() {
		return c.shared.err()
	}
	ok, delay := c.net.datagramFate(c.local, c.remote)
	if !ok {
		return nil // lost on the way, as UDP would lose it
	}
	at := time.Now().Add(delay)
	o := c.other
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.mu.dgrams) >= memDatagramQueue {
		c.net.countDrop()
		return nil
	}
	// Keep arrival order; equal times stay in send order.
	i := len(o.mu.dgrams)
	for i > 0 && o.mu.dgrams[i-1].at.After(at) {
		i--
	}
	o.mu.dgrams = append(o.mu.dgrams, pending[[]byte]{})
	copy(o.mu.dgrams[i+1:], o.mu.dgrams[i:])
	o.mu.dgrams[i] = pending[[]byte]{at: at, v: append([]byte(nil), b...)}
	o.notifyLocked()
	return nil
}

func (c *memConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	for {
		if c.closed() {
			return nil, c.shared.err()
		}
		c.mu.Lock()
		var next time.Time
		if len(c.mu.dgrams) > 0 {
			p := c.mu.dgrams[0]
			if !p.at.After(time.Now()) {
				c.mu.dgrams[0] = pending[[]byte]{}
				c.mu.dgrams = c.mu.dgrams[1:]
				c.mu.Unlock()
				return p.v, nil
			}
			next = p.at
		}
		wake := c.mu.wake
		c.mu.Unlock()
		if err := waitUntil(ctx, wake, c.shared.done, next, nil); err != nil {
			return nil, err
		}
	}
}

func (c *memConn) Peer() Peer               { return c.peer }
func (c *memConn) RemoteAddr() string       { return c.remoteAddr }
func (c *memConn) Context() context.Context { return c.ctx }
func (c *memConn) Close(reason string) error {
	c.shared.once.Do(func() {
		c.shared.reason = reason
		close(c.shared.done)
		c.cancel()
		c.other.cancel()
	})
	return nil
}

// pipe is one direction of a stream: bytes written at one end become
// readable at the other after the link's delay.
type pipe struct {
	net        *MemNetwork
	from, to   string
	conn       *memConnShared
	writerDone context.CancelFunc // ends the writing end's context

	mu struct {
		sync.Mutex
		chunks   []pending[[]byte]
		buffered int
		lastAt   time.Time // arrival of the last chunk; keeps the stream in order
		fin      bool      // writer closed
		finAt    time.Time
		reset    bool // writer aborted: reader gets errStreamReset
		stopped  bool // reader closed its side: writer gets errStopSending
		wake     chan struct{}
	}
}

func newPipe(c *memConn) *pipe {
	p := &pipe{net: c.net, from: c.local, to: c.remote, conn: c.shared}
	p.mu.wake = make(chan struct{})
	return p
}

func (p *pipe) notifyLocked() {
	close(p.mu.wake)
	p.mu.wake = make(chan struct{})
}

func (p *pipe) arrivalLocked(delay time.Duration) time.Time {
	at := time.Now().Add(delay)
	if at.Before(p.mu.lastAt) {
		at = p.mu.lastAt
	}
	p.mu.lastAt = at
	return at
}

// memStream is one end of a stream.
type memStream struct {
	in, out *pipe
	// ctx ends when our send side is finished: Close, Abort, the peer's
	// stop or reset, or the connection's end. As quic.Stream.Context.
	ctx    context.Context
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		deadline time.Time
		aborted  bool
		wake     chan struct{} // closed and replaced when the deadline changes
	}
}

func newMemStreamPair(opener, acceptor *memConn) (mine, theirs *memStream) {
	ab, ba := newPipe(opener), newPipe(acceptor)
	mine = &memStream{in: ba, out: ab}
	theirs = &memStream{in: ab, out: ba}
	mine.ctx, mine.cancel = context.WithCancel(opener.ctx)
	theirs.ctx, theirs.cancel = context.WithCancel(acceptor.ctx)
	ab.writerDone, ba.writerDone = mine.cancel, theirs.cancel
	mine.mu.wake = make(chan struct{})
	theirs.mu.wake = make(chan struct{})
	return mine, theirs
}

func (s *memStream) state() (deadline time.Time, aborted bool, wake <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.deadline, s.mu.aborted, s.mu.wake
}

func (s *memStream) Context() context.Context { return s.ctx }

func (s *memStream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	s.mu.deadline = t
	close(s.mu.wake)
	s.mu.wake = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func deadlinePassed(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	default:
		return b
	}
}

func (s *memStream) Read(b []byte) (int, error) {
	p := s.in
	for {
		deadline, aborted, dwake := s.state()
		if aborted {
			return 0, errLocalAbort
		}
		select {
		case <-p.conn.done:
			return 0, p.conn.err()
		default:
		}
		if deadlinePassed(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		now := time.Now()
		p.mu.Lock()
		switch {
		case p.mu.reset:
			p.mu.Unlock()
			return 0, errStreamReset
		case p.mu.stopped:
			p.mu.Unlock()
			return 0, errReadClosed
		}
		var next time.Time
		if len(p.mu.chunks) > 0 {
			c := &p.mu.chunks[0]
			if !c.at.After(now) {
				n := copy(b, c.v)
				c.v = c.v[n:]
				if len(c.v) == 0 {
					p.mu.chunks[0] = pending[[]byte]{}
					p.mu.chunks = p.mu.chunks[1:]
				}
				p.mu.buffered -= n
				p.notifyLocked()
				p.mu.Unlock()
				return n, nil
			}
			next = c.at
		} else if p.mu.fin {
			if !p.mu.finAt.After(now) {
				p.mu.Unlock()
				return 0, io.EOF
			}
			next = p.mu.finAt
		}
		wake := p.mu.wake
		p.mu.Unlock()
		waitUntil(context.Background(), wake, p.conn.done, earliest(next, deadline), dwake)
	}
}

func (s *memStream) Write(b []byte) (int, error) {
	p := s.out
	total := 0
	for total < len(b) {
		deadline, aborted, dwake := s.state()
		if aborted {
			return total, errLocalAbort
		}
		select {
		case <-p.conn.done:
			return total, p.conn.err()
		default:
		}
		if deadlinePassed(deadline) {
			return total, os.ErrDeadlineExceeded
		}
		ok, delay, changed := p.net.path(p.from, p.to)
		p.mu.Lock()
		switch {
		case p.mu.reset:
			p.mu.Unlock()
			return total, errLocalAbort
		case p.mu.fin:
			p.mu.Unlock()
			return total, errWriteClosed
		case p.mu.stopped:
			p.mu.Unlock()
			return total, errStopSending
		}
		if ok && p.mu.buffered < memStreamWindow {
			n := min(memStreamWindow-p.mu.buffered, len(b)-total)
			chunk := append([]byte(nil), b[total:total+n]...)
			p.mu.chunks = append(p.mu.chunks, pending[[]byte]{at: p.arrivalLocked(delay), v: chunk})
			p.mu.buffered += n
			total += n
			p.notifyLocked()
			p.mu.Unlock()
			continue
		}
		// Partitioned or the window is full: stall until something changes.
		wake := p.mu.wake
		p.mu.Unlock()
		var timer <-chan time.Time
		var t *time.Timer
		if !deadline.IsZero() {
			t = time.NewTimer(time.Until(deadline))
			timer = t.C
		}
		select {
		case <-wake:
		case <-p.conn.done:
		case <-dwake:
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
	return total, nil
}

func (s *memStream) Close() error {
	p := s.out
	_, delay, _ := p.net.path(p.from, p.to)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.reset {
		return errLocalAbort
	}
	if !p.mu.fin {
		p.mu.fin = true
		p.mu.finAt = p.arrivalLocked(delay)
		p.notifyLocked()
	}
	p.writerDone()
	return nil
}

func (s *memStream) CloseRead() {
	p := s.in
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mu.stopped {
		p.mu.stopped = true
		p.mu.chunks = nil
		p.mu.buffered = 0
		p.notifyLocked()
	}
	p.writerDone() // the peer may not send any more
}

func (s *memStream) Abort() {
	s.mu.Lock()
	s.mu.aborted = true
	close(s.mu.wake)
	s.mu.wake = make(chan struct{})
	s.mu.Unlock()
	s.CloseRead()
	p := s.out
	p.mu.Lock()
	if !p.mu.reset {
		p.mu.reset = true
		p.mu.chunks = nil
		p.mu.buffered = 0
		p.notifyLocked()
	}
	p.mu.Unlock()
	p.writerDone()
}
