package udpproxy

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// wildcard matches every node in a rule.
	wildcard = "*"
	// clientName is how Stats names outside clients.
	clientName = "client"

	defaultIdle = 2 * time.Minute
	bufSize     = 64 << 10
	// sockBuf is asked for on every socket so that QUIC bursts are not lost
	// in the kernel before the proxy decides anything; the kernel may cap it.
	sockBuf = 4 << 20
)

// Link is one direction between two parties, by name. In Stats an outside
// client is named "client".
type Link struct{ From, To string }

// LinkStats counts what the rules decided on one link.
type LinkStats struct {
	Passed  uint64 // sent on at once or after a delay
	Dropped uint64 // by loss, block or partition
}

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	Forwarded uint64 // datagrams written to their destination, at once or after their delay
	Delayed   uint64 // datagrams held back by a delay rule (also counted in Forwarded once sent)
	Pending   int    // delayed datagrams not sent yet

	DroppedLoss      uint64
	DroppedBlock     uint64
	DroppedPartition uint64
	DroppedError     uint64 // the write failed, or the socket was closed underneath

	Upstreams int // upstream sockets open now
	Links     map[Link]LinkStats
}

// Proxy forwards datagrams between named nodes and applies fault rules.
// All methods are safe for concurrent use.
type Proxy struct {
	seed   int64
	idle   time.Duration // upstream idle timeout; tests shorten it before traffic
	delays *delayQueue
	wg     sync.WaitGroup // every reader and the delay queue

	forwarded, delayed   atomic.Uint64
	dropLoss, dropBlock  atomic.Uint64
	dropPart, dropErrors atomic.Uint64

	mu struct {
		sync.Mutex
		closed    bool
		rng       *rand.Rand
		nodes     map[string]*node
		byReal    map[netip.AddrPort]*node
		upstreams map[upstreamKey]*upstream
		rules     rules
		links     map[Link]*LinkStats
	}
}

type node struct {
	name   string
	pub    *net.UDPConn
	public string
	real   netip.AddrPort // guarded by Proxy.mu
}

type upstreamKey struct {
	src netip.AddrPort // who sent to Public(to)
	to  *node
}

// upstream is the proxy's socket towards Real(to) on behalf of src.
type upstream struct {
	key      upstreamKey
	conn     *net.UDPConn
	lastUsed time.Time // guarded by Proxy.mu
}

type delayRule struct{ d, jitter time.Duration }

type rules struct {
	loss    map[Link]float64
	delay   map[Link]delayRule
	blocked map[Link]bool
	group   map[string]int // node → partition group; nil when not partitioned
}

func newRules() rules {
	return rules{loss: map[Link]float64{}, delay: map[Link]delayRule{}, blocked: map[Link]bool{}}
}

// New returns a proxy with no nodes and no rules. Random drops and delays
// follow seed.
func New(seed int64) *Proxy {
	p := &Proxy{seed: seed, idle: defaultIdle, delays: newDelayQueue()}
	p.mu.rng = rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	p.mu.nodes = map[string]*node{}
	p.mu.byReal = map[netip.AddrPort]*node{}
	p.mu.upstreams = map[upstreamKey]*upstream{}
	p.mu.rules = newRules()
	p.mu.links = map[Link]*LinkStats{}
	p.wg.Go(func() { p.delays.run(p.write) })
	return p
}

// Seed returns the seed New was given, for a failing test to print.
func (p *Proxy) Seed() int64 { return p.seed }

// AddNode registers node name whose real socket is realAddr, opens its public
// address on publicAddr (127.0.0.1:0 if empty; pass a node's old public
// address to keep it across a restart of the proxy) and returns it.
func (p *Proxy) AddNode(name, realAddr, publicAddr string) (string, error) {
	if name == "" || name == wildcard || name == clientName {
		return "", fmt.Errorf("udpproxy: %q cannot name a node", name)
	}
	real, err := resolve(realAddr)
	if err != nil {
		return "", fmt.Errorf("udpproxy: node %s: real address: %w", name, err)
	}
	if publicAddr == "" {
		publicAddr = "127.0.0.1:0"
	}
	pubAddr, err := resolve(publicAddr)
	if err != nil {
		return "", fmt.Errorf("udpproxy: node %s: public address: %w", name, err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return "", fmt.Errorf("udpproxy: add node %s: %w", name, net.ErrClosed)
	}
	if _, ok := p.mu.nodes[name]; ok {
		return "", fmt.Errorf("udpproxy: node %s is already registered", name)
	}
	if other := p.mu.byReal[real]; other != nil {
		return "", fmt.Errorf("udpproxy: node %s: %s is already the real address of node %s", name, real, other.name)
	}
	pub, err := listen(pubAddr)
	if err != nil {
		return "", fmt.Errorf("udpproxy: node %s: %w", name, err)
	}
	n := &node{name: name, pub: pub, public: pub.LocalAddr().String(), real: real}
	p.mu.nodes[name] = n
	p.mu.byReal[real] = n
	p.wg.Go(func() { p.readPublic(n) })
	return n.public, nil
}

// SetReal changes where node name really listens, for a node restarted on
// another port. Its public address stays.
func (p *Proxy) SetReal(name, realAddr string) error {
	real, err := resolve(realAddr)
	if err != nil {
		return fmt.Errorf("udpproxy: node %s: real address: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.mu.nodes[name]
	if n == nil {
		return fmt.Errorf("udpproxy: no node %s", name)
	}
	if other := p.mu.byReal[real]; other != nil && other != n {
		return fmt.Errorf("udpproxy: node %s: %s is already the real address of node %s", name, real, other.name)
	}
	delete(p.mu.byReal, n.real)
	n.real = real
	p.mu.byReal[real] = n
	return nil
}

// Public returns the public address of node name, or "" if there is none.
func (p *Proxy) Public(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.mu.nodes[name]; n != nil {
		return n.public
	}
	return ""
}

// SetLoss drops datagrams from → to with probability prob; 0 removes the rule.
// "*" matches any node; the most specific rule wins.
func (p *Proxy) SetLoss(from, to string, prob float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prob <= 0 {
		delete(p.mu.rules.loss, Link{from, to})
		return
	}
	p.mu.rules.loss[Link{from, to}] = min(prob, 1)
}

// SetDelay holds datagrams from → to back for d plus a uniform random part
// of jitter, so jitter reorders them; zero for both removes the rule. "*"
// matches any node; the most specific rule wins.
func (p *Proxy) SetDelay(from, to string, d, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, jitter = max(d, 0), max(jitter, 0)
	if d == 0 && jitter == 0 {
		delete(p.mu.rules.delay, Link{from, to})
		return
	}
	p.mu.rules.delay[Link{from, to}] = delayRule{d, jitter}
}

// Block drops everything from → to. "*" matches any node and also outside
// clients: Block("*", Y) cuts Y off from everyone sending to it.
func (p *Proxy) Block(from, to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules.blocked[Link{from, to}] = true
}

// Partition splits the nodes into groups that cannot talk to each other in
// either direction; nodes in no group form one more group. It replaces the
// previous partition; no groups removes it. Outside clients are not
// affected. A node named in two groups is a bug in the test and panics.
func (p *Proxy) Partition(groups ...[]string) {
	var group map[string]int
	if len(groups) > 0 {
		group = map[string]int{}
		for i, g := range groups {
			for _, name := range g {
				if j, ok := group[name]; ok && j != i {
					panic(fmt.Sprintf("udpproxy: node %s is in partition groups %d and %d", name, j, i))
				}
				group[name] = i
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules.group = group
}

// Heal removes partitions and blocks; loss and delay stay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules.group = nil
	clear(p.mu.rules.blocked)
}

// Reset removes every rule.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.rules = newRules()
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	s := Stats{
		Forwarded:        p.forwarded.Load(),
		Delayed:          p.delayed.Load(),
		Pending:          p.delays.len(),
		DroppedLoss:      p.dropLoss.Load(),
		DroppedBlock:     p.dropBlock.Load(),
		DroppedPartition: p.dropPart.Load(),
		DroppedError:     p.dropErrors.Load(),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s.Upstreams = len(p.mu.upstreams)
	s.Links = make(map[Link]LinkStats, len(p.mu.links))
	for l, ls := range p.mu.links {
		s.Links[l] = *ls
	}
	return s
}

// Close closes every socket, discards delayed datagrams and waits for the
// proxy's goroutines. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	conns := make([]*net.UDPConn, 0, len(p.mu.nodes)+len(p.mu.upstreams))
	for _, n := range p.mu.nodes {
		conns = append(conns, n.pub)
	}
	for _, u := range p.mu.upstreams {
		conns = append(conns, u.conn)
	}
	clear(p.mu.upstreams)
	p.mu.Unlock()

	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.delays.close()
	p.wg.Wait()
	return errors.Join(errs...)
}

// readPublic forwards what arrives at Public(to) to Real(to).
func (p *Proxy) readPublic(to *node) {
	buf := make([]byte, bufSize)
	for {
		n, src, err := to.pub.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient error of one datagram
		}
		p.forward(to, unmap(src), buf[:n])
	}
}

func (p *Proxy) forward(to *node, src netip.AddrPort, b []byte) {
	p.mu.Lock()
	from, fromNode := clientName, false
	if x := p.mu.byReal[src]; x != nil {
		from, fromNode = x.name, true
	}
	delay, pass := p.judgeLocked(from, to.name, fromNode, true)
	if !pass {
		p.mu.Unlock()
		return
	}
	u, err := p.upstreamLocked(src, to)
	dst := to.real
	p.mu.Unlock()
	if err != nil {
		p.dropErrors.Add(1)
		return
	}
	p.send(u.conn, dst, b, delay)
}

// readUpstream sends what Real(to) answers on u back to its source from
// Public(to), and closes u once it has been idle for p.idle.
func (p *Proxy) readUpstream(u *upstream) {
	buf := make([]byte, bufSize)
	u.conn.SetReadDeadline(time.Now().Add(p.idle))
	for {
		n, _, err := u.conn.ReadFromUDPAddrPort(buf)
		switch {
		case err == nil:
			p.reply(u, buf[:n])
		case errors.Is(err, os.ErrDeadlineExceeded):
			next, expired := p.expire(u)
			if expired {
				return
			}
			u.conn.SetReadDeadline(next)
		case errors.Is(err, net.ErrClosed):
			return
		}
	}
}

func (p *Proxy) reply(u *upstream, b []byte) {
	from := u.key.to
	p.mu.Lock()
	u.lastUsed = time.Now()
	to, toNode := clientName, false
	if x := p.mu.byReal[u.key.src]; x != nil {
		to, toNode = x.name, true
	}
	delay, pass := p.judgeLocked(from.name, to, true, toNode)
	p.mu.Unlock()
	if pass {
		p.send(from.pub, u.key.src, b, delay)
	}
}

// expire closes u if it has been idle for p.idle, or says when to check again.
func (p *Proxy) expire(u *upstream) (next time.Time, expired bool) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return time.Time{}, true // Close closes the socket
	}
	if next = u.lastUsed.Add(p.idle); time.Now().Before(next) {
		p.mu.Unlock()
		return next, false
	}
	delete(p.mu.upstreams, u.key)
	p.mu.Unlock()
	u.conn.Close()
	return time.Time{}, true
}

// upstreamLocked returns the socket towards Real(to) for datagrams from src,
// opening it on first use.
func (p *Proxy) upstreamLocked(src netip.AddrPort, to *node) (*upstream, error) {
	key := upstreamKey{src, to}
	now := time.Now()
	if u := p.mu.upstreams[key]; u != nil {
		u.lastUsed = now
		return u, nil
	}
	if p.mu.closed {
		return nil, net.ErrClosed
	}
	local := netip.IPv4Unspecified()
	if to.real.Addr().Is6() {
		local = netip.IPv6Unspecified()
	}
	if to.real.Addr().IsLoopback() {
		local = to.real.Addr()
	}
	conn, err := listen(netip.AddrPortFrom(local, 0))
	if err != nil {
		return nil, err
	}
	u := &upstream{key: key, conn: conn, lastUsed: now}
	p.mu.upstreams[key] = u
	p.wg.Go(func() { p.readUpstream(u) })
	return u, nil
}

// judgeLocked applies the rules to one datagram from → to and counts the
// outcome. Outside clients (fromNode or toNode false) only meet blocks.
func (p *Proxy) judgeLocked(from, to string, fromNode, toNode bool) (delay time.Duration, pass bool) {
	ls := p.mu.links[Link{from, to}]
	if ls == nil {
		ls = new(LinkStats)
		p.mu.links[Link{from, to}] = ls
	}
	r := &p.mu.rules
	if r.blocked[Link{from, to}] || r.blocked[Link{from, wildcard}] || r.blocked[Link{wildcard, to}] || r.blocked[Link{wildcard, wildcard}] {
		ls.Dropped++
		p.dropBlock.Add(1)
		return 0, false
	}
	if !fromNode || !toNode {
		ls.Passed++
		return 0, true
	}
	if r.group != nil && groupOf(r.group, from) != groupOf(r.group, to) {
		ls.Dropped++
		p.dropPart.Add(1)
		return 0, false
	}
	if prob, ok := lookup(r.loss, from, to); ok && p.mu.rng.Float64() < prob {
		ls.Dropped++
		p.dropLoss.Add(1)
		return 0, false
	}
	ls.Passed++
	if dr, ok := lookup(r.delay, from, to); ok {
		delay = dr.d
		if dr.jitter > 0 {
			delay += time.Duration(p.mu.rng.Int64N(int64(dr.jitter)))
		}
	}
	return delay, true
}

// groupOf is the partition group of name; nodes in no group share group -1.
func groupOf(group map[string]int, name string) int {
	if g, ok := group[name]; ok {
		return g
	}
	return -1
}

// lookup finds the most specific rule for from → to.
func lookup[V any](m map[Link]V, from, to string) (V, bool) {
	for _, l := range [...]Link{{from, to}, {from, wildcard}, {wildcard, to}, {wildcard, wildcard}} {
		if v, ok := m[l]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

func (p *Proxy) send(conn *net.UDPConn, dst netip.AddrPort, b []byte, delay time.Duration) {
	if delay <= 0 {
		p.write(conn, dst, b)
		return
	}
	p.delayed.Add(1)
	p.delays.push(time.Now().Add(delay), conn, dst, b)
}

func (p *Proxy) write(conn *net.UDPConn, dst netip.AddrPort, b []byte) {
	if _, err := conn.WriteToUDPAddrPort(b, dst); err != nil {
		p.dropErrors.Add(1)
		return
	}
	p.forwarded.Add(1)
}

func resolve(addr string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return unmap(ua.AddrPort()), nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func listen(addr netip.AddrPort) (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	// Best effort: the kernel caps these at its own maximum.
	conn.SetReadBuffer(sockBuf)
	conn.SetWriteBuffer(sockBuf)
	return conn, nil
}

// delayQueue holds delayed datagrams in a heap by due time and sends them
// from one goroutine, so readers never wait for a delay.
type delayQueue struct {
	wake chan struct{} // a new earliest datagram; capacity 1
	done chan struct{}

	mu struct {
		sync.Mutex
		heap   packetHeap
		seq    uint64
		closed bool
	}
}

type delayedPacket struct {
	due  time.Time
	seq  uint64 // ties keep arrival order
	conn *net.UDPConn
	dst  netip.AddrPort
	b    []byte
}

func newDelayQueue() *delayQueue {
	return &delayQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push copies b: the reader reuses its buffer at once.
func (q *delayQueue) push(due time.Time, conn *net.UDPConn, dst netip.AddrPort, b []byte) {
	pkt := &delayedPacket{due: due, conn: conn, dst: dst, b: append([]byte(nil), b...)}
	q.mu.Lock()
	if q.mu.closed {
		q.mu.Unlock()
		return
	}
	q.mu.seq++
	pkt.seq = q.mu.seq
	heap.Push(&q.mu.heap, pkt)
	first := q.mu.heap[0] == pkt
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *delayQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.mu.heap)
}

// close discards what is still waiting and stops run.
func (q *delayQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.mu.closed {
		q.mu.closed = true
		q.mu.heap = nil
		close(q.done)
	}
}

func (q *delayQueue) run(write func(*net.UDPConn, netip.AddrPort, []byte)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ready []*delayedPacket
	for {
		q.mu.Lock()
		now := time.Now()
		for len(q.mu.heap) > 0 && !q.mu.heap[0].due.After(now) {
			ready = append(ready, heap.Pop(&q.mu.heap).(*delayedPacket))
		}
		wait := time.Hour
		if len(q.mu.heap) > 0 {
			wait = q.mu.heap[0].due.Sub(now)
		}
		q.mu.Unlock()

		for i, pkt := range ready {
			write(pkt.conn, pkt.dst, pkt.b)
			ready[i] = nil
		}
		ready = ready[:0]

		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-q.wake:
		case <-q.done:
			return
		}
	}
}

type packetHeap []*delayedPacket

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(*delayedPacket)) }
func (h *packetHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
