package sched

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/plugins"
	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// register installs the client API on srv.
func (n *Node) register(srv *transport.Server) {
	srv.Handle(api.MethodModulePush, n.handleModulePush)
	srv.Handle(api.MethodJobSubmit, n.handleSubmit)
	srv.Handle(api.MethodJobStatus, n.handleStatus)
	srv.Handle(api.MethodJobResults, n.handleResults)
	srv.Handle(api.MethodJobCancel, n.handleCancel)
	srv.Handle(api.MethodJobList, n.handleList)
	srv.Handle(api.MethodNodeInfo, n.handleInfo)
	srv.Handle(api.MethodMembers, n.handleMembers)
	srv.Handle(api.MethodLeave, n.handleLeave)
}

// wireError turns an internal error into one that crosses the wire with a
// stable code.
func wireError(err error) error {
	var te *transport.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return te
	case errors.Is(err, plugins.ErrInvalidModule):
		return transport.Errorf(api.CodeInvalidModule, "%v", err)
	case errors.Is(err, plugins.ErrMissingImport):
		return transport.Errorf(api.CodeMissingImport, "%v", err)
	case errors.Is(err, plugins.ErrLimit):
		return transport.Errorf(api.CodeLimit, "%v", err)
	case errors.Is(err, ErrStorage):
		return transport.Errorf(api.CodeStorage, "%v (the node accepts no writes until its disk recovers; nothing acknowledged was lost)", err)
	case errors.Is(err, ErrNotFound):
		return transport.Errorf(transport.CodeNotFound, "%v", err)
	case errors.Is(err, context.Canceled):
		return transport.Errorf(transport.CodeCancelled, "%v", err)
	}
	return transport.Errorf(transport.CodeInternal, "%v", err)
}

func (n *Node) handleModulePush(ctx context.Context, call *transport.ServerCall) error {
	var wasm []byte
	for {
		var c api.ModuleChunk
		err := call.Recv(&c)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if len(wasm)+len(c.Data) > api.MaxModuleSize {
			return transport.Errorf(transport.CodeTooLarge, "module is larger than the node's %d MiB limit", api.MaxModuleSize>>20)
		}
		wasm = append(wasm, c.Data...)
	}
	h := plugins.HashOf(wasm)
	existed := n.sandbox.HasModule(h)
	if !existed {
		if _, err := n.sandbox.AddModule(ctx, wasm); err != nil {
			return wireError(err)
		}
		n.log.Info("module stored", "module", h, "bytes", len(wasm))
	}
	return call.Send(api.ModulePushReply{Hash: string(h), Existed: existed})
}

// validateSpec checks a job before any of its items are stored.
func (n *Node) validateSpec(spec *api.JobSpec) error {
	h, err := plugins.ParseHash(spec.Module)
	if err != nil {
		return transport.Errorf(transport.CodeBadRequest, "job names module %q: %v", spec.Module, err)
	}
	if !n.sandbox.HasModule(h) {
		return transport.Errorf(api.CodeModuleMissing, "module %s is not on this node: push it first (gridnode module push FILE)", h)
	}
	if err := checkPolicy(spec.Policy); err != nil {
		return transport.Errorf(transport.CodeBadRequest, "job policy: %v", err)
	}
	if _, err := n.sandbox.Limits(PluginLimits(spec.Policy.Limits)); err != nil {
		return wireError(err)
	}
	for p := range spec.Files {
		if err := checkFilePath(p); err != nil {
			return transport.Errorf(transport.CodeBadRequest, "job file %q: %v", p, err)
		}
	}
	return nil
}

// PluginLimits is a job's wire limits as the sandbox takes them.
func PluginLimits(l api.Limits) plugins.Limits {
	return plugins.Limits{MemoryBytes: l.MemoryBytes, Deadline: l.Deadline, StdoutBytes: l.StdoutBytes, StderrBytes: l.StderrBytes}
}

func checkFilePath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "\\") {
		return errors.New("use a clean relative path inside the job tree, like data/input.txt")
	}
	return nil
}

func (n *Node) handleSubmit(ctx context.Context, call *transport.ServerCall) error {
	ctx, span := n.metrics.tracer.Start(ctx, "job.submit")
	defer span.End()
	if err := n.acceptingWrites(); err != nil {
		return err
	}
	var hdr api.SubmitHeader
	if err := call.Recv(&hdr); err != nil {
		return transport.Errorf(transport.CodeBadRequest, "submit must start with a job header: %v", err)
	}
	spec := hdr.Spec
	if err := n.validateSpec(&spec); err != nil {
		return err
	}
	if k := spec.IdempotencyKey; k != "" {
		// Accepted before, through this node or another (whose reply may
		// have been lost with it): the job's holders know the key.
		if id := n.askByKey(ctx, k); id != "" {
			st, err := n.statusAnywhere(ctx, id)
			if err != nil {
				return wireError(err)
			}
			return call.Send(api.SubmitReply{JobID: id, Items: st.Items, Existed: true})
		}
	}
	serial, err := n.store.NextSerial()
	if err != nil {
		return wireError(err)
	}
	v := n.view()
	rec := &jobRecord{
		ID:   fmt.Sprintf("%s-%d-%d", n.id.NodeID, v.Epoch, serial),
		Spec: spec, State: stateReceiving, Created: time.Now().UTC(),
		Term: v.Epoch, TermStart: 1, Promise: v.Epoch,
	}
	self, _ := v.Member(n.id.NodeID)
	self.NodeID = n.id.NodeID
	rec.Holders = pickHolders(v.Live(), self, rec.ID, ledgerReplicas)
	span.SetAttributes(attribute.String("gridnode.job", rec.ID))
	if len(spec.Files) > 0 {
		rec.FilesDir = filepath.Join(n.dataDir, "jobs", rec.ID, "files")
		if err := writeJobFiles(rec.FilesDir, spec.Files); err != nil {
			return wireError(fmt.Errorf("%w: write job files: %v", ErrStorage, err))
		}
		rec.Spec.Files = nil // on disk, not in every record read
	}
	if err := n.store.Begin(rec); err != nil {
		return wireError(err)
	}
	accepted := false
	defer func() {
		if !accepted {
			n.dropJob(rec)
		}
	}()
	for {
		var f api.SubmitFrame
		if err := call.Recv(&f); err != nil {
			if err == io.EOF {
				return transport.Errorf(transport.CodeBadRequest, "submit stream ended after %d items without an end frame: nothing was accepted", rec.Items)
			}
			return err
		}
		if f.End != nil {
			if f.End.Count != rec.Items {
				return transport.Errorf(transport.CodeBadRequest, "submit end says %d items but %d arrived: nothing was accepted", f.End.Count, rec.Items)
			}
			break
		}
		if f.Batch == nil {
			return transport.Errorf(transport.CodeBadRequest, "submit frame carries neither items nor an end")
		}
		if len(f.Batch.Inputs) > api.MaxItemBatch {
			return transport.Errorf(transport.CodeTooLarge, "a batch of %d items exceeds the %d-item limit", len(f.Batch.Inputs), api.MaxItemBatch)
		}
		for i, in := range f.Batch.Inputs {
			if len(in) > api.MaxItemInput {
				return transport.Errorf(transport.CodeTooLarge, "item %d has %d bytes of input; the limit is %d MiB: pass large data as job files", rec.Items+uint64(i), len(in), api.MaxItemInput>>20)
			}
		}
		if err := n.store.AppendInputs(rec.ID, rec.Items, f.Batch.Inputs); err != nil {
			return wireError(err)
		}
		rec.Items += uint64(len(f.Batch.Inputs))
	}
	if rec.Items == 0 {
		return transport.Errorf(transport.CodeBadRequest, "a job needs at least one item")
	}
	rec.State = api.JobRunning
	existing, err := n.store.Accept(rec)
	if err != nil {
		return wireError(err)
	}
	if existing != "" {
		accepted = true
		st, err := n.statusAnywhere(ctx, existing)
		if err != nil {
			return wireError(err)
		}
		return call.Send(api.SubmitReply{JobID: existing, Items: st.Items, Existed: true})
	}
	if err := n.holdNew(rec); err != nil {
		return err
	}
	accepted = true
	if err := n.sched.add(rec); err != nil {
		return wireError(err)
	}
	n.metrics.jobsSubmitted.Add(ctx, 1)
	n.metrics.items.Add(ctx, int64(rec.Items))
	n.log.Info("job accepted", "job", rec.ID, "items", rec.Items, "module", spec.Module, "trace", trace.SpanContextFromContext(ctx).TraceID())
	return call.Send(api.SubmitReply{JobID: rec.ID, Items: rec.Items})
}

// holdNew sends a job just stored here to its other holders, and returns
// once a majority of them (this node among them) has it: only then is it
// acknowledged. Holders that missed it get it later from the home.
func (n *Node) holdNew(rec *jobRecord) error {
	n.ledger.hold(rec.ID, rec.Holders)
	need := majority(len(rec.Holders))
	var mu sync.Mutex
	var errs []error
	var stored []string
	var wg sync.WaitGroup
	for _, h := range rec.Holders[1:] {
		wg.Go(func() {
			err := n.sendWhole(rec, h)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h, err))
			} else {
				stored = append(stored, h)
			}
		})
	}
	wg.Wait()
	if got := 1 + len(stored); got < need {
		n.ledger.forget(rec.ID)
		// Best effort: a copy left behind would run the job, should this
		// node die, though the client was told it was not accepted.
		for _, h := range stored {
			abort := putReq{Rec: rec.wire(), Abort: true}
			callNode(n, h, methodPut, n.holdPut, &abort)
		}
		return transport.Errorf(transport.CodeUnavailable, "job not accepted: %d of the %d nodes that must keep it stored it, and it needs %d (%v); nothing was kept: submit again", got, len(rec.Holders), need, errors.Join(errs...))
	}
	if len(errs) > 0 {
		n.log.Warn("a holder missed a new job; it gets it with the next results", "job", rec.ID, "err", errors.Join(errs...))
	}
	return nil
}

func writeJobFiles(dir string, files map[string][]byte) error {
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(full, data, 0o400); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) dropJob(rec *jobRecord) {
	n.ledger.forget(rec.ID)
	if err := n.store.Drop(rec.ID); err != nil {
		n.log.Warn("could not drop a job; it is dropped at the next start", "job", rec.ID, "err", err)
	}
	if rec.FilesDir != "" {
		os.RemoveAll(filepath.Dir(rec.FilesDir))
	}
}

// statusAnywhere is a job's status from its home, wherever that is.
func (n *Node) statusAnywhere(ctx context.Context, id string) (api.JobStatus, error) {
	if st, err := n.jobStatus(id); err == nil {
		return st, nil
	}
	home, err := n.homeFor(ctx, id)
	if err != nil {
		return api.JobStatus{}, err
	}
	if home == n.id.NodeID {
		return api.JobStatus{}, notServedHere(id)
	}
	var st api.JobStatus
	if err := n.cluster.Call(ctx, home, api.MethodJobStatus, api.JobRef{JobID: id}, &st); err != nil {
		return api.JobStatus{}, homeError(id, home, err)
	}
	return st, nil
}

func (n *Node) jobStatus(id string) (api.JobStatus, error) {
	if id == "" {
		return api.JobStatus{}, transport.Errorf(transport.CodeBadRequest, "the request names no job ID")
	}
	if st, _, ok := n.sched.status(id); ok {
		return st, nil
	}
	return api.JobStatus{}, fmt.Errorf("%w: job %s (unknown here, or its results expired)", ErrNotFound, id)
}

func (n *Node) handleStatus(ctx context.Context, call *transport.ServerCall) error {
	var ref api.JobRef
	if err := call.Recv(&ref); err != nil {
		return err
	}
	home, err := n.route(ctx, call, ref.JobID)
	if err != nil {
		return wireError(err)
	}
	if home != "" {
		var st api.JobStatus
		if err := n.cluster.Call(ctx, home, api.MethodJobStatus, ref, &st); err != nil {
			return homeError(ref.JobID, home, err)
		}
		return call.Send(st)
	}
	st, err := n.fullStatus(ctx, ref.JobID)
	if err != nil {
		return wireError(err)
	}
	return call.Send(st)
}

// route says where a client's call about a job is served: "" for here
// (this node serves it as its home), or the node to pass it to. A call
// passed on by another node is served here or refused, never passed on
// again, so that two nodes whose views differ for a moment cannot pass it
// back and forth.
func (n *Node) route(ctx context.Context, call *transport.ServerCall, jobID string) (string, error) {
	if jobID == "" {
		return "", transport.Errorf(transport.CodeBadRequest, "the request names no job ID")
	}
	if n.sched.serves(jobID) {
		return "", nil
	}
	if call.Peer().Role == transport.RoleNode {
		if n.ledger.holders(jobID) != nil {
			return "", notServedHere(jobID)
		}
		return "", fmt.Errorf("%w: job %s (not held here)", ErrNotFound, jobID)
	}
	home, err := n.homeFor(ctx, jobID)
	if err != nil {
		return "", err
	}
	if home == n.id.NodeID {
		return "", notServedHere(jobID)
	}
	return home, nil
}

// homeOf is the node that accepted a job: the first part of its ID (node
// ID, epoch, serial); "" for an ID of another shape.
func homeOf(jobID string) string {
	i := strings.LastIndexByte(jobID, '-')
	if i <= 0 {
		return ""
	}
	j := strings.LastIndexByte(jobID[:i], '-')
	if j <= 0 {
		return ""
	}
	return jobID[:j]
}

// homeError explains a job whose home could not be reached.
func homeError(jobID, home string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		return te
	}
	if errors.Is(err, grid.ErrUnknownMember) {
		return transport.Errorf(transport.CodeNotFound, "job %s is unknown: its ID names node %s, which is not a member of this cluster", jobID, home)
	}
	return transport.Errorf(transport.CodeUnavailable, "job %s is kept by node %s, which this node cannot reach (%v): try again, or ask a node that reaches it", jobID, home, err)
}

// fullStatus is a job's status with what its coordinators say about the
// items that are not done.
func (n *Node) fullStatus(ctx context.Context, jobID string) (api.JobStatus, error) {
	st, err := n.jobStatus(jobID)
	if err != nil || st.State != api.JobRunning {
		return st, err
	}
	coords := n.sched.coordinators(jobID)
	resps := make([]itemsResp, len(coords))
	var wg sync.WaitGroup
	for i, c := range coords {
		wg.Go(func() {
			// A coordinator that does not answer adds nothing.
			resps[i], _ = callNode(n, c, methodItems, n.coord.items, &itemsReq{Job: jobID, Example: 5})
		})
	}
	wg.Wait()
	if st.Waiting == nil {
		st.Waiting = map[string]uint64{}
	}
	seen := map[string]bool{}
	for _, r := range resps {
		st.Running += r.Running
		for k, v := range r.Waiting {
			st.Waiting[k] += v
		}
		for _, e := range r.Examples {
			if len(st.Unfinished) < 10 {
				st.Unfinished = append(st.Unfinished, e)
			}
		}
		for _, q := range r.Quarantined {
			if !seen[q.Node] {
				seen[q.Node] = true
				st.Quarantined = append(st.Quarantined, q)
			}
		}
	}
	st.Pending -= min(st.Pending, st.Running)
	return st, nil
}

func (n *Node) handleCancel(ctx context.Context, call *transport.ServerCall) error {
	var ref api.JobRef
	if err := call.Recv(&ref); err != nil {
		return err
	}
	if ref.JobID == "" {
		return transport.Errorf(transport.CodeBadRequest, "the cancel request names no job ID")
	}
	home, err := n.route(ctx, call, ref.JobID)
	if err != nil {
		return wireError(err)
	}
	if home != "" {
		var st api.JobStatus
		if err := n.cluster.Call(ctx, home, api.MethodJobCancel, ref, &st); err != nil {
			return homeError(ref.JobID, home, err)
		}
		return call.Send(st)
	}
	if err := n.sched.cancel(ref.JobID); err != nil {
		return wireError(err)
	}
	st, err := n.jobStatus(ref.JobID)
	if err != nil {
		return wireError(err)
	}
	n.log.Info("job cancel", "job", ref.JobID, "state", st.State)
	return call.Send(st)
}

func (n *Node) handleList(ctx context.Context, call *transport.ServerCall) error {
	var req api.JobListRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	return call.Send(api.JobList{Jobs: n.sched.statuses()})
}

func (n *Node) handleInfo(ctx context.Context, call *transport.ServerCall) error {
	var req api.NodeInfoRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	return call.Send(n.Info())
}

// resultBatchBytes keeps one results frame well under the frame cap.
const resultBatchBytes = 2 << 20

func (n *Node) handleResults(ctx context.Context, call *transport.ServerCall) error {
	var req api.ResultsRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	if req.JobID == "" {
		return transport.Errorf(transport.CodeBadRequest, "the results request names no job ID")
	}
	home, err := n.route(ctx, call, req.JobID)
	if err != nil {
		return wireError(err)
	}
	if home != "" {
		return n.proxyResults(ctx, call, home, req)
	}
	cursor := req.Cursor
	// The store is ahead of the in-memory status while a commit is being
	// applied: check the cursor against the store.
	rec, err := n.store.Job(req.JobID)
	if err != nil {
		return wireError(fmt.Errorf("%w (unknown here, or its results expired)", err))
	}
	if cursor > rec.Results {
		return transport.Errorf(transport.CodeBadRequest, "cursor %d is past the job's %d results", cursor, rec.Results)
	}
	for {
		st, changed, ok := n.sched.status(req.JobID)
		if !ok && n.ledger.holders(req.JobID) != nil {
			return transport.Errorf(transport.CodeUnavailable, "job %s moved to another home while its results were read; read again from cursor %d", req.JobID, cursor)
		}
		if !ok {
			return wireError(fmt.Errorf("%w: job %s (unknown here, or its results expired)", ErrNotFound, req.JobID))
		}
		sent, err := n.sendResults(call, req, &cursor)
		if err != nil {
			return err
		}
		// Status was read before the results: if it said done, every
		// result is now sent.
		if st.Done() && cursor == st.Committed+st.Failed {
			return call.Send(api.ResultBatch{Cursor: cursor, Status: &st})
		}
		if !req.Follow {
			if !sent {
				return call.Send(api.ResultBatch{Cursor: cursor})
			}
			return nil
		}
		if !sent {
			select {
			case <-changed:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// proxyResults serves a job kept by another node: it reads the job's
// result log from its home and passes every frame on.
func (n *Node) proxyResults(ctx context.Context, call *transport.ServerCall, home string, req api.ResultsRequest) error {
	st, err := n.cluster.Stream(ctx, home, api.MethodJobResults)
	if err != nil {
		return homeError(req.JobID, home, err)
	}
	if err := st.Send(req); err != nil {
		return homeError(req.JobID, home, err)
	}
	st.CloseSend() // fails only when the home already answered: read it
	for {
		var b api.ResultBatch
		err := st.Recv(&b)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return homeError(req.JobID, home, err)
		}
		if err := call.Send(b); err != nil {
			return err
		}
	}
}

// sendResults sends every result after *cursor in frames, advancing it.
func (n *Node) sendResults(call *transport.ServerCall, req api.ResultsRequest, cursor *uint64) (bool, error) {
	sent := false
	for {
		rs, err := n.store.Results(req.JobID, *cursor, 256, !req.NoOutput)
		if err != nil {
			return sent, wireError(err)
		}
		if len(rs) == 0 {
			return sent, nil
		}
		size, cut := 0, len(rs)
		for i, r := range rs {
			size += len(r.Output) + len(r.Log) + len(r.Message) + 128
			if size > resultBatchBytes && i > 0 {
				cut = i
				break
			}
		}
		rs = rs[:cut]
		*cursor = rs[len(rs)-1].Seq
		if err := call.Send(api.ResultBatch{Results: rs, Cursor: *cursor}); err != nil {
			return sent, err
		}
		sent = true
	}
}

func (n *Node) handleMembers(ctx context.Context, call *transport.ServerCall) error {
	var req api.MembersRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	return call.Send(membersOf(n.cluster.Status()))
}

// membersOf turns the cluster's status into its wire form.
func membersOf(st grid.Status) api.Members {
	out := api.Members{NodeID: st.NodeID, Epoch: st.Epoch, Leader: st.Leader, Quorum: st.Quorum == nil, LeaseAge: st.LeaseAge}
	if st.Quorum != nil {
		out.NoQuorum = st.Quorum.Error()
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, api.Member{
			NodeID: m.NodeID, Incarnation: m.Incarnation, Addr: m.Addr, Labels: m.Labels,
			State: m.State.String(), Monitor: m.Monitor, Leader: m.Leader, Self: m.Self,
			Slots: m.Slots, Running: m.Load, Free: m.Free, LastHeard: m.Heard, Timeout: m.Timeout, Suspect: m.Suspect,
		})
	}
	return out
}

func (n *Node) handleLeave(ctx context.Context, call *transport.ServerCall) error {
	var req api.LeaveRequest
	if err := call.Recv(&req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := n.leaveCluster(ctx); err != nil {
		return transport.Errorf(transport.CodeUnavailable, "leave: %v; the node keeps running, try again", err)
	}
	err := call.Send(api.LeaveReply{Epoch: n.view().Epoch})
	n.markLeft() // after the reply: whoever waits on Left stops the node
	return err
}
