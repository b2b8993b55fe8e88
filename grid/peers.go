package grid

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gridnode/gridnode/transport"
)

const (
	dialTimeout = 2 * time.Second
	dialBackoff = 500 * time.Millisecond
	callTimeout = 3 * time.Second
)

var errPoolClosed = errors.New("grid: node is shutting down")

// pool keeps one connection per peer address, shared by heartbeats, calls
// and the monitors' consensus. A failed dial is remembered for a moment so
// that a dead peer costs one dial per backoff, not one per heartbeat.
type pool struct {
	net   transport.Network
	dgram transport.DatagramFunc
	ctx   context.Context
	wg    sync.WaitGroup

	mu struct {
		sync.Mutex
		conns  map[string]*pconn
		closed bool
	}
}

type pconn struct {
	ready  chan struct{} // closed when the dial ended
	client *transport.Client
	err    error
	failed time.Time
}

func newPool(ctx context.Context, n transport.Network, dgram transport.DatagramFunc) *pool {
	p := &pool{net: n, dgram: dgram, ctx: ctx}
	p.mu.conns = make(map[string]*pconn)
	return p
}

// entry returns the connection entry for addr, starting a dial when there
// is none or the last one failed long enough ago.
func (p *pool) entry(addr string) (*pconn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, errPoolClosed
	}
	if pc, ok := p.mu.conns[addr]; ok {
		select {
		case <-pc.ready:
			if pc.err == nil || time.Since(pc.failed) < dialBackoff {
				return pc, nil
			}
		default:
			return pc, nil
		}
	}
	pc := &pconn{ready: make(chan struct{})}
	p.mu.conns[addr] = pc
	p.wg.Go(func() { p.dial(addr, pc) })
	return pc, nil
}

func (p *pool) dial(addr string, pc *pconn) {
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	defer cancel()
	cl, err := transport.Dial(ctx, p.net, addr, transport.ClientConfig{})
	if err == nil {
		p.mu.Lock()
		if p.mu.closed {
			err = errPoolClosed
			cl.Close()
		}
		p.mu.Unlock()
	}
	if err != nil {
		pc.err, pc.failed = err, time.Now()
		close(pc.ready)
		return
	}
	pc.client = cl
	close(pc.ready)
	conn := cl.Conn()
	if p.dgram != nil {
		p.wg.Go(func() { transport.ReadDatagrams(p.ctx, conn, p.dgram) })
	}
	// Forget the connection once it is gone, so the next use dials anew.
	context.AfterFunc(conn.Context(), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.mu.conns[addr] == pc {
			delete(p.mu.conns, addr)
		}
	})
}

// get returns a client for addr, dialing if needed.
func (p *pool) get(ctx context.Context, addr string) (*transport.Client, error) {
	pc, err := p.entry(addr)
	if err != nil {
		return nil, err
	}
	select {
	case <-pc.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pc.err != nil {
		return nil, pc.err
	}
	return pc.client, nil
}

// ready returns a connected client for addr without waiting; nil while a
// dial is under way (one is started if needed) or after it failed.
func (p *pool) ready(addr string) *transport.Client {
	pc, err := p.entry(addr)
	if err != nil {
		return nil
	}
	select {
	case <-pc.ready:
		return pc.client
	default:
		return nil
	}
}

// call makes one unary call to the node at addr.
func (p *pool) call(ctx context.Context, addr, method string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	return callOn(ctx, cl, method, req, resp)
}

// callOn makes one unary call on cl, closing a connection the call found
// broken so that the next call dials afresh.
func callOn(ctx context.Context, cl *transport.Client, method string, req, resp any) error {
	err := cl.Call(ctx, method, req, resp)
	if err != nil && transport.CodeOf(err) == transport.CodeUnavailable {
		cl.Close()
	}
	return err
}

// drop closes the connection to addr, if any: its peer is gone or replaced.
func (p *pool) drop(addr string) {
	p.mu.Lock()
	pc, ok := p.mu.conns[addr]
	delete(p.mu.conns, addr)
	p.mu.Unlock()
	if ok {
		go func() {
			<-pc.ready
			if pc.client != nil {
				pc.client.Close()
			}
		}()
	}
}

// close closes every connection and waits for the pool's goroutines; the
// caller cancels the pool's ctx first.
func (p *pool) close() {
	p.mu.Lock()
	p.mu.closed = true
	conns := p.mu.conns
	p.mu.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
	for _, pc := range conns {
		if pc.client != nil {
			pc.client.Close()
		}
	}
}
