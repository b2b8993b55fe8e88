package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// Config says how to reach a node. Addr and credentials usually come from a
// Profile.
type Config struct {
	Addr string
	// Addrs are more nodes to try when Addr cannot be reached. Besides
	// them, the client learns the addresses of the cluster's live members
	// from each node it reaches, so that it can go on through another node
	// when its node dies.
	Addrs []string
	// Only keeps the client to Addr: it never goes on through another node
	// (for tools that watch one node).
	Only bool
	// CA, Cert and Key are PEM files: the cluster CA and this client's
	// certificate and key.
	CA, Cert, Key string
	// Network overrides the QUIC network; tests use transport's in-memory one.
	Network transport.Network
}

// ConfigFromProfile is the Config a profile describes.
func ConfigFromProfile(p Profile) Config {
	return Config{Addr: p.Addr, CA: p.CA, Cert: p.Cert, Key: p.Key}
}

// Client talks to one node at a time: any node serves any job. When its
// connection breaks it dials again, the same node first, then the others
// it knows of. Calls are safe for concurrent use.
type Client struct {
	cfg     Config
	network transport.Network

	mu    sync.Mutex
	rc    *transport.Client
	cn    transport.Conn
	addr  string   // the node it talks to now
	known []string // live members' addresses, as the last node it reached said
}

// dialEach bounds one dial when there are other nodes to try: a node
// that answers at all answers a dial within milliseconds, and a dead one
// should not hold the client up for long.
const dialEach = time.Second

// ErrUnreachable wraps failures to reach or stay connected to the node.
var ErrUnreachable = errors.New("sdk: node unreachable")

// Dial connects to the node in cfg.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("sdk: no node address: pass one, or load a profile written by `gridnode dev`")
	}
	c := &Client{cfg: cfg, network: cfg.Network, addr: cfg.Addr}
	if c.network == nil {
		creds, err := transport.LoadClient(cfg.CA, cfg.Cert, cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("sdk: load credentials: %w", err)
		}
		c.network = transport.NewQUIC(creds, transport.QUICConfig{})
	}
	if _, err := c.client(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// client returns a live connection, dialling again if the last one broke:
// the node it talked to first, then the configured and learned others.
func (c *Client) client(ctx context.Context) (*transport.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rc != nil && c.cn.Context().Err() == nil {
		return c.rc, nil
	}
	first := c.rc == nil && c.known == nil
	if c.rc != nil {
		c.rc.Close()
		c.rc = nil
	}
	addrs := []string{c.addr}
	if !c.cfg.Only {
		for _, a := range append(append([]string{c.cfg.Addr}, c.cfg.Addrs...), c.known...) {
			if !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	var errs []error
	for _, a := range addrs {
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if len(addrs) > 1 {
			dctx, cancel = context.WithTimeout(ctx, dialEach)
		}
		cn, err := c.network.Dial(dctx, a)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", a, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.cn, c.rc, c.addr = cn, transport.NewClient(cn, transport.ClientConfig{}), a
		if !c.cfg.Only && (first || a != addrs[0]) {
			c.learnLocked(ctx)
		}
		return c.rc, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnreachable, errors.Join(errs...))
}

// learnLocked asks the node just reached for the live members' addresses,
// to fall back on. A node that does not say is no reason to fail.
func (c *Client) learnLocked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, dialEach)
	defer cancel()
	var m api.Members
	if err := c.rc.Call(ctx, api.MethodMembers, api.MembersRequest{}, &m); err != nil {
		return
	}
	known := []string{}
	for _, x := range m.Members {
		if x.State == "alive" && x.Addr != "" {
			known = append(known, x.Addr)
		}
	}
	c.known = known
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rc != nil {
		err := c.rc.Close()
		c.rc = nil
		return err
	}
	return nil
}

// Addr is the node this client talks to now.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

func (c *Client) call(ctx context.Context, method string, req, resp any) error {
	rc, err := c.client(ctx)
	if err != nil {
		return err
	}
	return c.wrap(rc.Call(ctx, method, req, resp))
}

// wrap marks connection failures as ErrUnreachable; errors the node sent
// (*transport.Error) pass unchanged.
func (c *Client) wrap(err error) error {
	var te *transport.Error
	if err == nil || errors.As(err, &te) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Addr(), err)
}

// PushModule uploads a module and returns its name ("sha256:…"). Pushing a
// module the node already has costs one upload and changes nothing.
func (c *Client) PushModule(ctx context.Context, wasm []byte) (api.ModulePushReply, error) {
	rc, err := c.client(ctx)
	if err != nil {
		return api.ModulePushReply{}, err
	}
	st, err := rc.Stream(ctx, api.MethodModulePush)
	if err != nil {
		return api.ModulePushReply{}, c.wrap(err)
	}
	defer st.Close()
	for off := 0; off < len(wasm); off += api.ModuleChunkSize {
		end := min(off+api.ModuleChunkSize, len(wasm))
		if err := st.Send(api.ModuleChunk{Data: wasm[off:end]}); err != nil {
			break // the node ended the call early: its verdict follows
		}
	}
	st.CloseSend()
	var reply api.ModulePushReply
	if err := st.Recv(&reply); err != nil {
		return reply, c.wrap(err)
	}
	return reply, nil
}

// Submit streams a job's items to the node and returns once the node has
// stored all of them durably. Items are sent in batches as they are
// produced. An error from items aborts the submit: nothing is accepted.
func (c *Client) Submit(ctx context.Context, spec api.JobSpec, items iter.Seq2[[]byte, error]) (api.SubmitReply, error) {
	rc, err := c.client(ctx)
	if err != nil {
		return api.SubmitReply{}, err
	}
	st, err := rc.Stream(ctx, api.MethodJobSubmit)
	if err != nil {
		return api.SubmitReply{}, c.wrap(err)
	}
	defer st.Close()
	var reply api.SubmitReply
	// A send fails when the node has ended the call early (a refusal, or an
	// idempotency hit): its reply says why.
	verdict := func() (api.SubmitReply, error) {
		st.CloseSend()
		if err := st.Recv(&reply); err != nil {
			return reply, c.wrap(err)
		}
		return reply, nil
	}
	if err := st.Send(api.SubmitHeader{Spec: spec}); err != nil {
		return verdict()
	}
	var (
		count uint64
		batch [][]byte
		size  int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := st.Send(api.SubmitFrame{Batch: &api.ItemBatch{Inputs: batch}})
		count += uint64(len(batch))
		batch, size = batch[:0], 0
		return err
	}
	for in, err := range items {
		if err != nil {
			return api.SubmitReply{}, fmt.Errorf("sdk: item %d: %w (nothing was submitted)", count+uint64(len(batch)), err)
		}
		if len(in) > api.MaxItemInput {
			return api.SubmitReply{}, fmt.Errorf("sdk: item %d has %d bytes; the limit is %d MiB: pass large data as job files (nothing was submitted)", count+uint64(len(batch)), len(in), api.MaxItemInput>>20)
		}
		if size+len(in) > 2<<20 || len(batch) == api.MaxItemBatch {
			if err := flush(); err != nil {
				return verdict()
			}
		}
		batch = append(batch, in)
		size += len(in) + 8
	}
	if err := flush(); err != nil {
		return verdict()
	}
	if err := st.Send(api.SubmitFrame{End: &api.SubmitEnd{Count: count}}); err != nil {
		return verdict()
	}
	return verdict()
}

// Status returns a job's progress.
func (c *Client) Status(ctx context.Context, jobID string) (api.JobStatus, error) {
	var st api.JobStatus
	err := c.call(ctx, api.MethodJobStatus, api.JobRef{JobID: jobID}, &st)
	return st, err
}

// Cancel stops a job: no new executions start, running ones are stopped and
// their outcomes discarded. Results committed before stay readable.
func (c *Client) Cancel(ctx context.Context, jobID string) (api.JobStatus, error) {
	var st api.JobStatus
	err := c.call(ctx, api.MethodJobCancel, api.JobRef{JobID: jobID}, &st)
	return st, err
}

// Jobs lists the jobs the node holds.
func (c *Client) Jobs(ctx context.Context) ([]api.JobStatus, error) {
	var l api.JobList
	err := c.call(ctx, api.MethodJobList, api.JobListRequest{}, &l)
	return l.Jobs, err
}

// Info describes the node.
func (c *Client) Info(ctx context.Context) (api.NodeInfo, error) {
	var in api.NodeInfo
	err := c.call(ctx, api.MethodNodeInfo, api.NodeInfoRequest{}, &in)
	return in, err
}

// Members returns the cluster as the node sees it: every member with its
// state, incarnation, address, labels, load and the node's failure
// detector estimate, and whether the node holds a quorum.
func (c *Client) Members(ctx context.Context) (api.Members, error) {
	var m api.Members
	err := c.call(ctx, api.MethodMembers, api.MembersRequest{}, &m)
	return m, err
}

// Leave asks the node to leave the cluster on purpose: its duties are
// handed over, every member records it as left, and the node stops.
func (c *Client) Leave(ctx context.Context) (api.LeaveReply, error) {
	var r api.LeaveReply
	err := c.call(ctx, api.MethodLeave, api.LeaveRequest{}, &r)
	return r, err
}

// Wait polls a job's status every interval (0 means 250 ms), calling fn
// (if not nil) with each, until the job is done or ctx ends.
func (c *Client) Wait(ctx context.Context, jobID string, interval time.Duration, fn func(api.JobStatus)) (api.JobStatus, error) {
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := c.Status(ctx, jobID)
		if err != nil {
			return st, err
		}
		if fn != nil {
			fn(st)
		}
		if st.Done() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

// ResultsOptions choose where a results read starts and whether it waits.
type ResultsOptions struct {
	// Cursor is the Seq of the last result already read; 0 starts at the
	// beginning. Keep Results.Cursor() to resume after a disconnect.
	Cursor uint64
	// Follow keeps reading as results commit, until the job is done.
	Follow bool
	// NoOutput leaves outputs and logs out.
	NoOutput bool
}

// Results reads a job's result log in commit order. When the connection
// breaks it redials and resumes after the last result it returned, so each
// result is returned once.
type Results struct {
	c      *Client
	req    api.ResultsRequest
	st     *transport.ClientStream
	buf    []api.Result
	status *api.JobStatus
	err    error
	ended  bool
}

// Results starts reading job jobID's results.
func (c *Client) Results(jobID string, opt ResultsOptions) *Results {
	return &Results{c: c, req: api.ResultsRequest{JobID: jobID, Cursor: opt.Cursor, Follow: opt.Follow, NoOutput: opt.NoOutput}}
}

// Cursor is the Seq of the last result returned: pass it as
// ResultsOptions.Cursor to resume.
func (r *Results) Cursor() uint64 { return r.req.Cursor }

// Status is the job's final status, once the stream ended because the job is done.
func (r *Results) Status() *api.JobStatus { return r.status }

// Err is the error that ended the read, if any.
func (r *Results) Err() error { return r.err }

// Close stops reading.
func (r *Results) Close() {
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
	r.ended = true
}

// Next returns the next result; false at the end of the log (or, with
// Follow, when the job is done) or on error (see Err).
func (r *Results) Next(ctx context.Context) (api.Result, bool) {
	const redials = 40
	tries := 0
	for len(r.buf) == 0 {
		if r.ended || r.err != nil {
			return api.Result{}, false
		}
		if r.st == nil {
			rc, err := r.c.client(ctx)
			if err == nil {
				r.st, err = rc.Stream(ctx, api.MethodJobResults)
			}
			if err == nil {
				err = r.st.Send(r.req)
			}
			if err == nil {
				// CloseSend fails only when the node has already ended the
				// call (it answered before our half-close arrived): the
				// answer is there to read.
				r.st.CloseSend()
			}
			if err != nil {
				if r.retry(ctx, &tries, redials, err) {
					continue
				}
				return api.Result{}, false
			}
		}
		var b api.ResultBatch
		err := r.st.Recv(&b)
		if err == io.EOF {
			r.st.Close()
			r.st = nil
			if !r.req.Follow {
				r.ended = true
			}
			continue
		}
		if err != nil {
			if r.retry(ctx, &tries, redials, err) {
				continue
			}
			return api.Result{}, false
		}
		r.buf = b.Results
		if b.Status != nil {
			r.status = b.Status
			r.ended = true
		}
	}
	res := r.buf[0]
	r.buf = r.buf[1:]
	r.req.Cursor = res.Seq
	return res, true
}

// retry decides whether a failed read is worth a new stream, from the
// cursor: a broken connection (the client dials again, another node if
// its own is gone) and a node's "unavailable" (the job's home is changing
// after a death) are retried, for about half a minute; other errors from
// the node are final.
func (r *Results) retry(ctx context.Context, tries *int, limit int, err error) bool {
	if r.st != nil {
		r.st.Close()
		r.st = nil
	}
	var te *transport.Error
	*tries++
	if (errors.As(err, &te) && te.Code != transport.CodeUnavailable) || ctx.Err() != nil || *tries > limit {
		r.err = r.c.wrap(err)
		return false
	}
	select {
	case <-time.After(min(time.Duration(*tries)*100*time.Millisecond, time.Second)):
		return true
	case <-ctx.Done():
		r.err = ctx.Err()
		return false
	}
}

// All reads every remaining result (see Next).
func (r *Results) All(ctx context.Context) iter.Seq2[api.Result, error] {
	return func(yield func(api.Result, error) bool) {
		for {
			res, ok := r.Next(ctx)
			if !ok {
				if r.err != nil {
					yield(api.Result{}, r.err)
				}
				return
			}
			if !yield(res, nil) {
				return
			}
		}
	}
}
