package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gridnode/gridnode/sdk"
	"github.com/gridnode/gridnode/sdk/api"
)

// Client returns a cached SDK client for node i, dialled from its profile
// (again after a kill or restart). Call it from the test's goroutine: it
// fails the test when the node cannot be reached in 10 s.
func (c *Cluster) Client(i int) *sdk.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := c.client(ctx, c.Node(i))
	if err != nil {
		c.t.Fatalf("harness: %v", err)
	}
	return cl
}

func (c *Cluster) client(ctx context.Context, n *Node) (*sdk.Client, error) {
	c.mu.Lock()
	cl, gen := n.client, n.gen
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	p, err := sdk.LoadProfile(n.Profile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.ID, err)
	}
	cfg := sdk.ConfigFromProfile(p)
	cfg.Only = true // a test asks this node, not whichever answers
	cl, err = sdk.Dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.ID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case n.gen != gen:
		cl.Close()
		return nil, fmt.Errorf("%s restarted or stopped while being dialled", n.ID)
	case n.client != nil: // another caller won the race
		cl.Close()
		return n.client, nil
	}
	n.client = cl
	return cl, nil
}

func (c *Cluster) dropClient(n *Node) {
	c.mu.Lock()
	cl := n.client
	n.client = nil
	c.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

// Members asks node i for its picture of the cluster.
func (c *Cluster) Members(ctx context.Context, i int) (api.Members, error) {
	n := c.Node(i)
	cl, err := c.client(ctx, n)
	if err != nil {
		return api.Members{}, err
	}
	m, err := cl.Members(ctx)
	if err != nil {
		return m, fmt.Errorf("%s: members: %w", n.ID, err)
	}
	return m, nil
}

// Round is one poll of every live node.
type Round struct {
	At      time.Time // when the round started
	Live    []int
	Members map[int]api.Members // the answers, by node index
	Errs    map[int]error       // the nodes that did not answer
}

// OK reports whether every live node answered.
func (r Round) OK() bool { return len(r.Errs) == 0 && len(r.Live) > 0 }

// String summarises the round, one node per line.
func (r Round) String() string {
	var b strings.Builder
	for _, i := range r.Live {
		if err, ok := r.Errs[i]; ok {
			fmt.Fprintf(&b, "\n  n%d: %v", i, err)
		} else {
			fmt.Fprintf(&b, "\n  n%d: %s", i, Summary(r.Members[i]))
		}
	}
	return b.String()
}

// Summary is a one-line picture of m: epoch, quorum, leader and every
// member as id:state/incarnation (* for monitors).
func Summary(m api.Members) string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %d leader %s", m.Epoch, m.Leader)
	if m.Quorum {
		b.WriteString(" quorum")
	} else {
		fmt.Fprintf(&b, " NO QUORUM (%s)", m.NoQuorum)
	}
	b.WriteString(" [")
	for k, x := range m.Members {
		if k > 0 {
			b.WriteByte(' ')
		}
		mon := ""
		if x.Monitor {
			mon = "*"
		}
		fmt.Fprintf(&b, "%s%s:%s/%d", x.NodeID, mon, x.State, x.Incarnation)
	}
	b.WriteByte(']')
	return b.String()
}

// Poll asks every live node for its Members, in parallel, every PollEvery
// until check returns true for a round or ctx ends; then it returns ctx's
// error with the last round.
func (c *Cluster) Poll(ctx context.Context, check func(Round) bool) error {
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	var last Round
	for {
		last = c.round(ctx)
		if ctx.Err() == nil && check(last) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last round:%s%s", ctx.Err(), last, c.crashReport())
		case <-tick.C:
		}
	}
}

func (c *Cluster) round(ctx context.Context) Round {
	r := Round{At: time.Now(), Live: c.Live(), Members: map[int]api.Members{}, Errs: map[int]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, i := range r.Live {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			m, err := c.Members(cctx, i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errs[i] = err
			} else {
				r.Members[i] = m
			}
		})
	}
	wg.Wait()
	return r
}

func (c *Cluster) crashReport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, n := range c.nodes {
		for _, s := range n.crashes {
			b.WriteString("\n  " + s)
		}
	}
	return b.String()
}

// WaitAll polls every live node's Members every PollEvery until pred holds
// for all of them in the same round (every live node answering), or ctx
// ends.
func (c *Cluster) WaitAll(ctx context.Context, pred func(i int, m api.Members) bool) error {
	return c.Poll(ctx, func(r Round) bool {
		if !r.OK() {
			return false
		}
		for i, m := range r.Members {
			if !pred(i, m) {
				return false
			}
		}
		return true
	})
}

// SameEpoch reports whether every answer of r has the same epoch.
func SameEpoch(r Round) bool {
	first := true
	var e uint64
	for _, m := range r.Members {
		if first {
			e, first = m.Epoch, false
		} else if m.Epoch != e {
			return false
		}
	}
	return true
}

// Count is how many members of m are in state ("alive", "dead", "left").
func Count(m api.Members, state string) int {
	n := 0
	for _, x := range m.Members {
		if x.State == state {
			n++
		}
	}
	return n
}

// MonitorCount is how many members of m are flagged monitors.
func MonitorCount(m api.Members) int {
	n := 0
	for _, x := range m.Members {
		if x.Monitor {
			n++
		}
	}
	return n
}

// Member finds id in m.
func Member(m api.Members, id string) (api.Member, bool) {
	for _, x := range m.Members {
		if x.NodeID == id {
			return x, true
		}
	}
	return api.Member{}, false
}
