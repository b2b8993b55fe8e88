package grid

import (
	"context"
	"errors"
	"fmt"

	"github.com/gridnode/gridnode/transport"
)

// ErrUnknownMember is returned for a call to a node the view does not hold.
var ErrUnknownMember = errors.New("grid: unknown member")

// addrOf returns the address of member id in the current view, whatever
// its state: the caller decides whether a dead or departed member is worth
// calling.
func (c *Cluster) addrOf(id string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.mu.view.Member(id)
	if !ok || m.Addr == "" {
		return "", fmt.Errorf("%w: %s is not in view %d", ErrUnknownMember, id, c.mu.view.Epoch)
	}
	return m.Addr, nil
}

// client returns this node's connection to member id, dialing if needed.
// Every layer above grid shares these connections: one per pair of nodes.
func (c *Cluster) client(ctx context.Context, id string) (*transport.Client, error) {
	addr, err := c.addrOf(id)
	if err != nil {
		return nil, err
	}
	return c.pool.get(ctx, addr)
}

// Call makes one unary call to member id. ctx bounds it.
func (c *Cluster) Call(ctx context.Context, id, method string, req, resp any) error {
	cl, err := c.client(ctx, id)
	if err != nil {
		return err
	}
	return callOn(ctx, cl, method, req, resp)
}

// Stream opens a streaming call to member id.
func (c *Cluster) Stream(ctx context.Context, id, method string) (*transport.ClientStream, error) {
	cl, err := c.client(ctx, id)
	if err != nil {
		return nil, err
	}
	return cl.Stream(ctx, method)
}

// Stretch is the factor (>= 1) by which this node stretches its timeouts
// now: above 1 while it runs late itself or sees many peers silent at once
// (a crisis). Layers above scale their own deadlines by it, so that work is
// not moved away from nodes that are merely slow to be heard.
func (c *Cluster) Stretch() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.mu.stretch, 1)
}
