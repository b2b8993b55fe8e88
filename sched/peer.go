package sched

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
)

// errClosing is returned by node-to-node handlers while the node stops.
var errClosing = errors.New("sched: the node is stopping")

// peerCallTimeout bounds one node-to-node call.
const peerCallTimeout = 15 * time.Second

// callNode calls method on node to; when to is this node, it calls local
// directly, so that a single node (or the part of a job that stays on one
// node) pays no network round trip.
func callNode[Req, Resp any](n *Node, to, method string, local func(context.Context, string, *Req) (Resp, error), req *Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(n.ctx, peerCallTimeout)
	defer cancel()
	return callNodeCtx(ctx, n, to, method, local, req)
}

// callNodeCtx is callNode bounded by ctx instead.
func callNodeCtx[Req, Resp any](ctx context.Context, n *Node, to, method string, local func(context.Context, string, *Req) (Resp, error), req *Req) (Resp, error) {
	if to == n.id.NodeID {
		return local(ctx, to, req)
	}
	var resp Resp
	err := n.cluster.Call(ctx, to, method, req, &resp)
	return resp, err
}

// handleNode registers a node-to-node method: only nodes of the cluster
// (by their certificate) may call it.
func handleNode[Req, Resp any](n *Node, method string, f func(context.Context, string, *Req) (Resp, error)) {
	n.srv.Handle(method, func(ctx context.Context, call *transport.ServerCall) error {
		if err := nodesOnly(call); err != nil {
			return err
		}
		var req Req
		if err := call.Recv(&req); err != nil {
			return err
		}
		resp, err := f(ctx, call.Peer().ID, &req)
		if err != nil {
			return wireError(err)
		}
		return call.Send(resp)
	})
}

// nodesOnly refuses a caller whose certificate is not a node's.
func nodesOnly(call *transport.ServerCall) error {
	if p := call.Peer(); p.Role != transport.RoleNode {
		return transport.Errorf(transport.CodeUnauthenticated, "%s is for nodes of the cluster, not %s", call.Method(), p)
	}
	return nil
}

// registerPeers installs the node-to-node methods.
func (n *Node) registerPeers() {
	handleNode(n, methodAssign, n.coord.assign)
	handleNode(n, methodExec, n.exec.accept)
	handleNode(n, methodReport, n.coord.report)
	handleNode(n, methodTake, n.exec.take)
	handleNode(n, methodDrop, n.exec.drop)
	handleNode(n, methodCommit, n.sched.commit)
	handleNode(n, methodItems, n.coord.items)
	handleNode(n, methodJob, n.jobInfo)
	handleNode(n, methodCkpt, n.sched.saveCheckpoints)
	handleNode(n, methodResume, n.sched.loadCheckpoint)
	handleNode(n, methodPut, n.holdPut)
	handleNode(n, methodAppend, n.holdAppend)
	handleNode(n, methodGather, n.holdGather)
	handleNode(n, methodFetch, n.holdFetch)
	handleNode(n, methodWhere, n.holdWhere)
	handleNode(n, methodHeld, n.holdCheckpoints)
	n.srv.Handle(methodModule, n.serveModule)
}

// spawn runs f on a goroutine that Close waits for; false once the node
// is stopping.
func (n *Node) spawn(f func()) bool {
	n.spawnMu.Lock()
	defer n.spawnMu.Unlock()
	if n.ctx.Err() != nil {
		return false
	}
	n.wg.Go(f)
	return true
}

// aliveAt reports whether member id is alive at incarnation inc.
func (n *Node) aliveAt(id string, inc uint64) bool {
	m, ok := n.view().Member(id)
	return ok && m.State == grid.Alive && m.Incarnation == inc
}

// moduleFetcher fetches modules this node lacks from peers, by hash, one
// fetch per module at a time.
type moduleFetcher struct {
	n  *Node
	mu sync.Mutex
	in map[plugins.Hash]*fetch
}

type fetch struct {
	done chan struct{}
	err  error
}

// ensure makes module h available here, fetching it from node from (the
// job's home) or, failing that, from another live member.
func (f *moduleFetcher) ensure(ctx context.Context, h plugins.Hash, from string) error {
	if f.n.sandbox.HasModule(h) {
		return nil
	}
	f.mu.Lock()
	if f.in == nil {
		f.in = map[plugins.Hash]*fetch{}
	}
	cur := f.in[h]
	if cur == nil {
		cur = &fetch{done: make(chan struct{})}
		f.in[h] = cur
		f.mu.Unlock()
		cur.err = f.fetch(ctx, h, from)
		f.mu.Lock()
		delete(f.in, h)
		close(cur.done)
		f.mu.Unlock()
		return cur.err
	}
	f.mu.Unlock()
	select {
	case <-cur.done:
		return cur.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *moduleFetcher) fetch(ctx context.Context, h plugins.Hash, from string) error {
	sources := []string{from}
	for _, m := range f.n.view().Live() {
		if m.NodeID != from && m.NodeID != f.n.id.NodeID && len(sources) < 4 {
			sources = append(sources, m.NodeID)
		}
	}
	var errs []error
	for _, src := range sources {
		wasm, err := f.fetchFrom(ctx, h, src)
		if err == nil {
			if got := plugins.HashOf(wasm); got != h {
				err = fmt.Errorf("node %s sent a module whose hash is %s, not %s: refused", src, got, h)
			} else if _, err = f.n.sandbox.AddModule(ctx, wasm); err == nil {
				f.n.log.Info("module fetched from a peer", "module", h, "from", src, "bytes", len(wasm))
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src, err))
	}
	return fmt.Errorf("module %s is not on this node and could not be fetched: %w", h, errors.Join(errs...))
}

func (f *moduleFetcher) fetchFrom(ctx context.Context, h plugins.Hash, node string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := f.n.cluster.Stream(ctx, node, methodModule)
	if err != nil {
		return nil, err
	}
	if err := st.Send(moduleReq{Hash: string(h)}); err != nil {
		return nil, err
	}
	st.CloseSend() // fails only when the peer already answered: read it
	var wasm []byte
	for {
		var c api.ModuleChunk
		err := st.Recv(&c)
		if err == io.EOF {
			return wasm, nil
		}
		if err != nil {
			return nil, err
		}
		if len(wasm)+len(c.Data) > api.MaxModuleSize {
			return nil, fmt.Errorf("module is larger than the %d MiB limit", api.MaxModuleSize>>20)
		}
		wasm = append(wasm, c.Data...)
	}
}

// serveModule sends a stored module to a peer that lacks it.
func (n *Node) serveModule(ctx context.Context, call *transport.ServerCall) error {
	if err := nodesOnly(call); err != nil {
		return err
	}
	var req moduleReq
	if err := call.Recv(&req); err != nil {
		return err
	}
	h, err := plugins.ParseHash(req.Hash)
	if err != nil {
		return transport.Errorf(transport.CodeBadRequest, "module %q: %v", req.Hash, err)
	}
	wasm, err := n.sandbox.ModuleBytes(h)
	if err != nil {
		return transport.Errorf(transport.CodeNotFound, "module %s is not on node %s", h, n.id.NodeID)
	}
	for len(wasm) > 0 {
		c := wasm[:min(len(wasm), api.ModuleChunkSize)]
		wasm = wasm[len(c):]
		if err := call.Send(api.ModuleChunk{Data: c}); err != nil {
			return err
		}
	}
	return nil
}

// jobInfo answers a peer that runs a job's items and needs its files.
func (n *Node) jobInfo(ctx context.Context, from string, req *jobReq) (jobResp, error) {
	rec, err := n.store.Job(req.ID)
	if err != nil {
		return jobResp{}, err
	}
	resp := jobResp{Job: headerOf(rec, n.id.NodeID)}
	if rec.FilesDir != "" {
		if resp.Files, err = readJobFiles(rec.FilesDir); err != nil {
			return jobResp{}, fmt.Errorf("%w: read the files of job %s: %v", ErrStorage, req.ID, err)
		}
	}
	return resp, nil
}

// readJobFiles reads a job's file tree, by relative path.
func readJobFiles(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	return files, err
}

// headerOf is a job's header as peers get it.
func headerOf(rec *jobRecord, home string) jobHeader {
	return jobHeader{ID: rec.ID, Home: home, Spec: rec.Spec, Files: rec.FilesDir != "", Holders: rec.Holders}
}

// jobFiles returns the directory holding a job's files on this node,
// fetching them from the job's home the first time.
func (n *Node) jobFiles(ctx context.Context, hdr jobHeader) (string, error) {
	if rec, err := n.store.Job(hdr.ID); err == nil && rec.State != stateReceiving {
		return rec.FilesDir, nil // this node keeps a copy of the job
	}
	dir := filepath.Join(n.dataDir, "jobs", hdr.ID, "files")
	marker := filepath.Join(n.dataDir, "jobs", hdr.ID, "files.complete")
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	resp, err := callNode(n, hdr.home(n.view()), methodJob, n.jobInfo, &jobReq{ID: hdr.ID})
	if err != nil {
		return "", fmt.Errorf("fetch the files of job %s from its home %s: %w", hdr.ID, hdr.Home, err)
	}
	for p := range resp.Files {
		if err := checkFilePath(p); err != nil {
			return "", fmt.Errorf("job %s: home %s sent file %q: %v", hdr.ID, hdr.Home, p, err)
		}
	}
	os.RemoveAll(dir)
	if err := writeJobFiles(dir, resp.Files); err != nil {
		return "", fmt.Errorf("%w: write the files of job %s: %v", ErrStorage, hdr.ID, err)
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return "", fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return dir, nil
}
