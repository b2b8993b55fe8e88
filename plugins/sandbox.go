package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Isolation says where executions run.
type Isolation string

const (
	// InProcess runs modules on goroutines of the calling process. Fast; a
	// module that escapes wazero's cooperative interruption is still stopped by
	// the call guard (see guard.go), at a cost per wasm call.
	InProcess Isolation = "inprocess"
	// Process runs every execution in a long-lived, supervised worker process
	// that is killed when it overruns its deadline. The default.
	Process Isolation = "process"
)

// Config configures a Sandbox. The zero value of every field means its default.
type Config struct {
	Dir           string    // plugins state: Dir/modules/<hex>.wasm, Dir/cache/ (compilation cache), Dir/scratch/; "" → a temp dir removed by Close
	Isolation     Isolation // "" → Process
	Workers       int       // max concurrent executions; 0 → runtime.GOMAXPROCS(0)
	WorkerCommand []string  // how to start one worker process; nil → [os.Executable()] with env GRIDNODE_WORKER=1 (see MaybeServeWorker)
	Max           Limits    // node-side maximums; zero fields → 4 GiB, 24 h, 64 MiB, 1 MiB
	Logger        *slog.Logger
}

// Task is one execution of one item.
type Task struct {
	Module           Hash
	ItemID           string // seeds the deterministic clock and random source
	Name             string // argv[0]; "" → "job"
	Input            []byte // stdin
	Args             []string
	Env              map[string]string
	FilesDir         string // host directory mounted read-only at /job; "" → none
	Limits           Limits // validated by Sandbox.Limits; zero fields → defaults; fields over the node maximum are clamped
	Nondeterministic bool   // real clocks and crypto/rand instead of the virtual ones
	// Checkpoint is a sealed checkpoint (see OpenCheckpoint) that
	// grid.checkpoint_load hands the guest: the execution resumes from it.
	// nil: none. One that does not open for this module and item is
	// refused, and the execution starts from the beginning.
	Checkpoint []byte
	// OnCheckpoint, when set, gets every checkpoint the guest saves with
	// grid.checkpoint_save, sealed, in order, while the execution runs. It
	// is called from the Sandbox's goroutines and must not block for long.
	// (A func field does not cross to a worker process.)
	OnCheckpoint func(sealed []byte)
}

// Grace is how long past its deadline an execution may run before its worker
// is killed (Process) or it is reported as a runaway (InProcess).
const Grace = 500 * time.Millisecond

// recycleAfter is how many executions a worker serves before it is replaced,
// so that its heap returns to baseline.
const recycleAfter = 20000

// Sandbox stores, compiles and executes modules. It is safe for concurrent use.
type Sandbox struct {
	cfg     Config // filled copy
	max     Limits
	log     *slog.Logger
	store   store
	eng     *engine // validation; and execution when InProcess
	pool    *pool   // Process only
	slots   chan struct{}
	scratch string // this Sandbox's private scratch root
	tempDir bool   // cfg.Dir was made by Open
	faults  faults // injected faults; always off unless built with -tags gridnode_faults

	runaways atomic.Int64 // in-process executions that did not stop in time
	inflight sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
	}
}

// Open prepares Dir and, for Process isolation, the worker pool (workers start on demand).
func Open(ctx context.Context, cfg Config) (*Sandbox, error) {
	s := &Sandbox{cfg: cfg}
	c := &s.cfg
	if c.Isolation == "" {
		c.Isolation = Process
	}
	if c.Isolation != Process && c.Isolation != InProcess {
		return nil, fmt.Errorf("plugins: unknown isolation %q (want %q or %q)", c.Isolation, Process, InProcess)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	s.log = c.Logger.With("pkg", "plugins")
	s.max = nodeMax(c.Max)
	f, err := loadFaults()
	if err != nil {
		return nil, err
	}
	s.faults = f
	f.warn(s.log)
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "gridnode-plugins-")
		if err != nil {
			return nil, fmt.Errorf("plugins: temp dir: %w", err)
		}
		c.Dir, s.tempDir = d, true
	}
	for _, d := range []string{"modules", "cache", "scratch"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("plugins: prepare %s: %w", c.Dir, err)
		}
	}
	s.store = store{dir: filepath.Join(c.Dir, "modules")}
	sc, err := os.MkdirTemp(filepath.Join(c.Dir, "scratch"), strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("plugins: scratch dir: %w", err)
	}
	s.scratch = sc
	s.eng, err = newEngine(ctx, filepath.Join(c.Dir, "cache"), c.Isolation == InProcess)
	if err != nil {
		os.RemoveAll(sc)
		return nil, err
	}
	s.slots = make(chan struct{}, c.Workers)
	if c.Isolation == Process {
		cmd := c.WorkerCommand
		if len(cmd) == 0 {
			exe, err := os.Executable()
			if err != nil {
				s.eng.close(ctx)
				os.RemoveAll(sc)
				return nil, fmt.Errorf("plugins: find own executable for workers: %w", err)
			}
			cmd = []string{exe}
		}
		s.pool = newPool(slices.Clone(cmd), c.Dir, c.Workers, s.log)
	}
	return s, nil
}

// AddModule validates, compiles and stores wasm, and returns its hash.
// Adding a module twice is cheap and returns the same hash. Errors wrap
// ErrInvalidModule or ErrMissingImport and say what to change.
func (s *Sandbox) AddModule(ctx context.Context, wasm []byte) (Hash, error) {
	if s.isClosed() {
		return "", ErrClosed
	}
	h := HashOf(wasm)
	keep := s.cfg.Isolation == InProcess
	if _, err := s.eng.compile(ctx, h, wasm, keep); err != nil {
		return "", err
	}
	if err := s.store.write(h, wasm); err != nil {
		return "", err
	}
	return h, nil
}

// HasModule reports whether the module is stored on this node.
func (s *Sandbox) HasModule(h Hash) bool { return s.store.has(h) }

// ModuleBytes returns a stored module (to serve it to peers). Error wraps ErrModuleNotFound.
func (s *Sandbox) ModuleBytes(h Hash) ([]byte, error) { return s.store.read(h) }

// Limits fills the zero fields of req with the defaults and refuses any field
// over the node maximum; the error names the limit, the value and the maximum.
func (s *Sandbox) Limits(req Limits) (Limits, error) { return checkLimits(req, s.max) }

// Dir returns the state directory in use (useful when Config.Dir was "").
func (s *Sandbox) Dir() string { return s.cfg.Dir }

// MaxLimits is the node-side maximum of every limit, defaults filled in.
func (s *Sandbox) MaxLimits() Limits { return s.max }

// Execute runs one task and classifies its outcome. It never panics; if ctx
// ends first the outcome is StatusCancelled.
func (s *Sandbox) Execute(ctx context.Context, t Task) (o Outcome) {
	start := time.Now()
	// A refused checkpoint is reported on every outcome, including those
	// decided before the module runs, and is not sent to a worker.
	var refused string
	if t.Checkpoint != nil {
		if _, _, err := OpenCheckpoint(t.Checkpoint, t.Module, t.ItemID); err != nil {
			refused, t.Checkpoint = err.Error(), nil
		}
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("execute panicked", "module", t.Module, "item", t.ItemID, "panic", r)
			o = Outcome{Status: StatusCrashed, Message: fmt.Sprintf("internal error: %v", r)}
		}
		if o.Digest == "" || (o.Status != StatusOK && o.Emitted != nil) {
			o.seal()
		}
		if o.Duration == 0 {
			o.Duration = time.Since(start)
		}
		if refused != "" {
			o.CheckpointRefused = refused
		}
		s.faults.apply(&o, t.ItemID)
	}()
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return Outcome{Status: StatusCancelled, Message: "cancelled: the sandbox is closed"}
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	t.Limits = s.clamp(t.Limits)
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return Outcome{Status: StatusCancelled, Message: fmt.Sprintf("cancelled while waiting for a free slot: %v", context.Cause(ctx))}
	}
	defer func() { <-s.slots }()
	if s.cfg.Isolation == InProcess {
		return s.executeInProcess(ctx, t, s.scratch)
	}
	return s.pool.execute(ctx, t, s.scratch)
}

// clamp fills defaults and keeps every field within the node maximum.
func (s *Sandbox) clamp(l Limits) Limits {
	l.MemoryBytes = min(l.MemoryBytes, s.max.MemoryBytes)
	l.Deadline = min(max(l.Deadline, 0), s.max.Deadline)
	l.StdoutBytes = min(max(l.StdoutBytes, 0), s.max.StdoutBytes)
	l.StderrBytes = min(max(l.StderrBytes, 0), s.max.StderrBytes)
	out, err := checkLimits(l, s.max)
	if err != nil { // cannot happen after clamping, except a sub-page memory limit
		out, _ = checkLimits(Limits{Deadline: l.Deadline, StdoutBytes: l.StdoutBytes, StderrBytes: l.StderrBytes, MemoryBytes: pageSize}, s.max)
	}
	return out
}

// executeInProcess runs t on a goroutine and waits for it at most deadline + Grace.
func (s *Sandbox) executeInProcess(ctx context.Context, t Task, scratch string) Outcome {
	c, o, ok := s.compiledFor(ctx, t)
	if !ok {
		return o
	}
	x := newExecution(t)
	gate := &checkpointGate{f: t.OnCheckpoint}
	defer gate.close()
	x.st.ckpt.deliver = gate.deliver
	done := make(chan runResult, 1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		done <- s.eng.runExecution(ctx, c, x, scratch)
	}()
	timer := time.NewTimer(t.Limits.Deadline + Grace)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.Outcome
	case <-timer.C:
		n := s.runaways.Add(1)
		go func() { <-done; s.runaways.Add(-1) }()
		s.log.Error("in-process execution did not stop after its deadline", "module", t.Module, "item", t.ItemID, "runaways", n)
		return Outcome{
			Status: StatusDeadline,
			Message: fmt.Sprintf("exceeded the %v deadline and did not stop within %v: the module escaped cooperative interruption and its goroutine is still running in this process; run untrusted modules with process isolation",
				t.Limits.Deadline, Grace),
			Duration: t.Limits.Deadline + Grace,
		}
	}
}

// compiledFor returns the in-process compiled module for t, compiling it from the store on first use.
func (s *Sandbox) compiledFor(ctx context.Context, t Task) (*compiled, Outcome, bool) {
	if c := s.eng.lookup(t.Module); c != nil {
		return c, Outcome{}, true
	}
	wasm, err := s.store.read(t.Module)
	if err != nil {
		return nil, moduleErrorOutcome(t.Module, err), false
	}
	c, err := s.eng.compile(ctx, t.Module, wasm, true)
	if err != nil {
		return nil, moduleErrorOutcome(t.Module, err), false
	}
	return c, Outcome{}, true
}

// moduleErrorOutcome classifies an error from loading or compiling a module.
func moduleErrorOutcome(h Hash, err error) Outcome {
	o := Outcome{Message: fmt.Sprintf("module %s: %v", h.short(), err)}
	switch {
	case errors.Is(err, ErrModuleNotFound):
		o.Status = StatusModuleNotFound
	case errors.Is(err, ErrMissingImport):
		o.Status = StatusMissingImport
	case errors.Is(err, ErrInvalidModule):
		o.Status = StatusInvalidModule
	default:
		o.Status = StatusCrashed
	}
	o.seal()
	return o
}

func (s *Sandbox) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// Close refuses new executions, waits for running ones, stops every worker
// and releases the runtime. In-process runaways (see executeInProcess) are
// waited for at most Grace.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	s.mu.Unlock()

	waited := make(chan struct{})
	go func() { s.inflight.Wait(); close(waited) }()
	if s.runaways.Load() > 0 {
		select {
		case <-waited:
		case <-time.After(Grace):
			s.log.Error("closing with in-process executions still running", "count", s.runaways.Load())
		}
	} else {
		<-waited
	}
	var errs []error
	if s.pool != nil {
		errs = append(errs, s.pool.close())
	}
	if s.runaways.Load() == 0 {
		errs = append(errs, s.eng.close(context.Background()))
	}
	errs = append(errs, os.RemoveAll(s.scratch))
	if s.tempDir {
		errs = append(errs, os.RemoveAll(s.cfg.Dir))
	}
	return errors.Join(errs...)
}
