package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// engine is one wazero runtime with the grid's host modules and a cache of
// compiled modules. The supervisor (in-process isolation) and every worker
// process own one each; all of them share the on-disk compilation cache.
type engine struct {
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	coop     bool                              // in-process: ctx checks at loop headers plus the call guard (see guard.go)
	provided map[string]api.FunctionDefinition // "module.name" → definition the grid provides

	scratch scratchDirs

	mu   sync.Mutex
	mods map[Hash]*compiled
}

type compiled struct {
	cm       wazero.CompiledModule
	minPages uint32 // largest minimum of the module's memories
}

// newEngine starts a compiler-engine runtime whose compilation cache lives in cacheDir.
// cooperative selects in-process mode: WithCloseOnContextDone and the call
// guard, so that every execution can be stopped without killing the process.
// Workers run without them (much faster loops; see doc.go) and are killed instead.
func newEngine(ctx context.Context, cacheDir string, cooperative bool) (*engine, error) {
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("plugins: compilation cache in %s: %w", cacheDir, err)
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(cache).
		WithCloseOnContextDone(cooperative)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	e := &engine{rt: rt, cache: cache, coop: cooperative, provided: map[string]api.FunctionDefinition{}, mods: map[Hash]*compiled{}}
	_, err = wasi_snapshot_preview1.Instantiate(ctx, rt)
	if err == nil {
		var grid api.Module
		grid, err = rt.NewHostModuleBuilder("grid").
			NewFunctionBuilder().WithFunc(hostProgress).WithParameterNames("fraction").Export("progress").
			NewFunctionBuilder().WithFunc(hostEmit).WithParameterNames("ptr", "len").WithResultNames("status").Export("emit").
			NewFunctionBuilder().WithFunc(hostCheckpointSave).WithParameterNames("ptr", "len").WithResultNames("status").Export("checkpoint_save").
			NewFunctionBuilder().WithFunc(hostCheckpointLoad).WithParameterNames("ptr", "cap").WithResultNames("size").Export("checkpoint_load").
			Instantiate(ctx)
		if err == nil {
			for _, m := range []api.Module{rt.Module(wasi_snapshot_preview1.ModuleName), grid} {
				for name, def := range m.ExportedFunctionDefinitions() {
					e.provided[m.Name()+"."+name] = def
				}
			}
		}
	}
	if err != nil {
		rt.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("plugins: host modules: %w", err)
	}
	return e, nil
}

func (e *engine) close(ctx context.Context) error {
	err := e.rt.Close(ctx)
	if cerr := e.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// lookup returns the compiled module for h, or nil.
func (e *engine) lookup(h Hash) *compiled {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mods[h]
}

// compile validates and compiles wasm (named h) and keeps the result when keep is set.
// Errors wrap ErrInvalidModule or ErrMissingImport.
// Compiling one module concurrently twice is harmless (the cache dedups), only wasteful.
func (e *engine) compile(ctx context.Context, h Hash, wasm []byte, keep bool) (*compiled, error) {
	if c := e.lookup(h); c != nil {
		return c, nil
	}
	if err := checkPreamble(wasm); err != nil {
		return nil, err
	}
	cctx := ctx
	if e.coop {
		cctx = experimental.WithFunctionListenerFactory(ctx, callGuard{})
	}
	cm, err := e.rt.CompileModule(cctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	if err := e.checkImports(cm); err != nil {
		cm.Close(ctx)
		return nil, err
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		cm.Close(ctx)
		return nil, fmt.Errorf("%w: no _start export: the grid runs WASI preview1 commands (build for wasm32-wasip1 as a command, not a reactor or library)", ErrInvalidModule)
	}
	c := &compiled{cm: cm}
	for _, m := range cm.ImportedMemories() {
		c.minPages = max(c.minPages, m.Min())
	}
	for _, m := range cm.ExportedMemories() {
		c.minPages = max(c.minPages, m.Min())
	}
	if !keep {
		return c, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.mods[h]; old != nil {
		cm.Close(ctx)
		return old, nil
	}
	e.mods[h] = c
	return c, nil
}

// drop forgets and closes a compiled module.
func (e *engine) drop(ctx context.Context, h Hash) {
	e.mu.Lock()
	c := e.mods[h]
	delete(e.mods, h)
	e.mu.Unlock()
	if c != nil {
		c.cm.Close(ctx)
	}
}

// checkPreamble recognises WebAssembly components and non-wasm bytes before
// wazero does, so that the message says what to do.
func checkPreamble(b []byte) error {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return fmt.Errorf("%w: not a WebAssembly binary (no \\0asm preamble)", ErrInvalidModule)
	}
	version := uint16(b[4]) | uint16(b[5])<<8
	layer := uint16(b[6]) | uint16(b[7])<<8
	if layer != 0 {
		return fmt.Errorf("%w: a WebAssembly component (layer %d, version %#x), not a core module: rebuild for wasm32-wasip1", ErrInvalidModule, layer, version)
	}
	if version != 1 {
		return fmt.Errorf("%w: unsupported core module version %d (want 1)", ErrInvalidModule, version)
	}
	return nil
}

// checkImports lists every import the grid does not provide, all at once.
func (e *engine) checkImports(cm wazero.CompiledModule) error {
	var missing []string
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		key := mod + "." + name
		def, ok := e.provided[key]
		switch {
		case !ok:
			missing = append(missing, key)
		case !slices.Equal(def.ParamTypes(), f.ParamTypes()) || !slices.Equal(def.ResultTypes(), f.ResultTypes()):
			missing = append(missing, fmt.Sprintf("%s (signature %s, the grid's is %s)", key, sig(f), sig(def)))
		}
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		missing = append(missing, mod+"."+name+" (memory)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the module needs %s, but the grid provides only wasi_snapshot_preview1, grid.progress, grid.emit, grid.checkpoint_save and grid.checkpoint_load", ErrMissingImport, strings.Join(missing, ", "))
}

func sig(f api.FunctionDefinition) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ",")
	}
	return "(" + name(f.ParamTypes()) + ")->(" + name(f.ResultTypes()) + ")"
}

// execState is what the host functions of one execution share.
type execState struct {
	progress atomic.Uint64 // math.Float64bits
	emitted  emitted       // grid.emit
	ckpt     checkpoints   // grid.checkpoint_save and grid.checkpoint_load
}

type execStateKey struct{}

func hostProgress(ctx context.Context, f float64) {
	st, _ := ctx.Value(execStateKey{}).(*execState)
	if st == nil || math.IsNaN(f) {
		return
	}
	st.progress.Store(math.Float64bits(min(max(f, 0), 1)))
}

var errOutputTooLarge = errors.New("stdout limit exceeded")

// runResult is an Outcome plus what the caller needs to manage the runner.
type runResult struct {
	Outcome
	MemoryHit bool // linear memory reached the limit: recycle a worker
	Abandoned bool // the worker gave up on a module that is still running: kill it
}

// execution is the observable state of one run: what the guest wrote so far.
// A worker snapshots it when it abandons a run at its deadline.
type execution struct {
	t      Task
	lim    Limits
	start  time.Time
	stdout *capWriter
	stderr *tailWriter
	st     *execState
	alloc  *limitAllocator
	stop   context.CancelCauseFunc // set by run
}

func newExecution(t Task) *execution {
	lim := t.Limits.withDefaults(DefaultLimits())
	x := &execution{t: t, lim: lim, start: time.Now(), st: &execState{},
		alloc:  &limitAllocator{limit: uint64(lim.memoryPages()) * pageSize},
		stderr: &tailWriter{limit: lim.StderrBytes}}
	x.st.ckpt.start(t)
	x.stdout = &capWriter{limit: lim.StdoutBytes, onOver: func() {
		// Stop the guest inside its fd_write: a panic in a host call ends the
		// wasm call at once, whether or not the runtime checks its ctx.
		panic(sys.NewExitError(exitCodeStopped))
	}}
	return x
}

// exitCodeStopped is the exit code we use to stop a guest from a host call.
const exitCodeStopped = 0xeffffffe

// snapshot returns what the execution produced so far, sealed with status s.
func (x *execution) snapshot(s Status, msg string) runResult {
	r := x.produced()
	r.Status, r.Message = s, msg
	r.seal()
	return r
}

// produced returns what the execution produced so far, without a status or digest.
func (x *execution) produced() runResult {
	var r runResult
	r.Stdout = x.stdout.bytes()
	r.Stderr, r.StderrTruncated = x.stderr.tail()
	r.Progress = math.Float64frombits(x.st.progress.Load())
	r.Emitted = x.st.emitted.list()
	r.Resumed, r.CheckpointRefused = x.st.ckpt.state()
	r.MemoryHit = x.alloc.hit.Load()
	r.Duration = time.Since(x.start)
	return r
}

// runExecution executes x on c. scratch, when set, is the root under which a
// clean directory is taken and mounted at /tmp (see scratchDirs). It returns when _start returns, traps or exits, or — in a
// cooperative engine — when ctx ends at the next check point.
func (e *engine) runExecution(ctx context.Context, c *compiled, x *execution, scratch string) runResult {
	t, lim := x.t, x.lim
	if uint64(c.minPages)*pageSize > x.alloc.limit {
		x.alloc.hit.Store(true)
		return x.snapshot(StatusMemory, fmt.Sprintf("memory limit of %s reached (the module declares a minimum of %s)", fmtBytes(x.alloc.limit), fmtBytes(uint64(c.minPages)*pageSize)))
	}

	runCtx, cancel := context.WithTimeoutCause(ctx, lim.Deadline, context.DeadlineExceeded)
	defer cancel()
	runCtx, cancelCause := context.WithCancelCause(runCtx)
	defer cancelCause(nil)
	x.stop = cancelCause
	x.stdout.onOver = func() {
		cancelCause(errOutputTooLarge)
		panic(sys.NewExitError(exitCodeStopped))
	}
	runCtx = context.WithValue(runCtx, execStateKey{}, x.st)
	runCtx = experimental.WithMemoryAllocator(runCtx, x.alloc)

	cfg := moduleConfig(t, x.stdout, x.stderr)
	fs := wazero.NewFSConfig()
	if t.FilesDir != "" {
		fs = fs.WithReadOnlyDirMount(t.FilesDir, "/job")
	}
	if scratch != "" {
		dir, stamp, err := e.scratch.get(scratch)
		if err != nil {
			return x.snapshot(StatusCrashed, fmt.Sprintf("could not create the scratch directory: %v", err))
		}
		defer e.scratch.put(scratch, dir, stamp)
		fs = fs.WithDirMount(dir, "/tmp")
	}
	cfg = cfg.WithFSConfig(fs)

	mod, err := e.instantiate(runCtx, c.cm, cfg)
	if mod != nil {
		mod.Close(context.WithoutCancel(ctx))
	}
	res := x.produced()
	classify(&res, err, ctx, runCtx, t, lim)
	res.seal()
	return res
}

// instantiate runs _start; a panic escaping wazero (a bug, or an allocator
// refusal during instantiation) becomes an error instead of killing the caller.
func (e *engine) instantiate(ctx context.Context, cm wazero.CompiledModule, cfg wazero.ModuleConfig) (mod api.Module, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("wazero panicked: %v", r)
		}
	}()
	return e.rt.InstantiateModule(ctx, cm, cfg)
}

func moduleConfig(t Task, stdout, stderr interface{ Write([]byte) (int, error) }) wazero.ModuleConfig {
	name := t.Name
	if name == "" {
		name = "job"
	}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module may run at once
		WithArgs(append([]string{name}, t.Args...)...).
		WithStdin(bytes.NewReader(t.Input)).
		WithStdout(stdout).
		WithStderr(stderr)
	keys := make([]string, 0, len(t.Env))
	for k := range t.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys) // environ order is observable: keep it deterministic
	for _, k := range keys {
		cfg = cfg.WithEnv(k, t.Env[k])
	}
	if t.Nondeterministic {
		return cfg.WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(cryptoRand{})
	}
	vc := &virtualClock{}
	return cfg.
		WithWalltime(vc.walltime, sys.ClockResolution(time.Microsecond)).
		WithNanotime(vc.nanotime, sys.ClockResolution(time.Microsecond)).
		WithNanosleep(vc.nanosleep).
		WithOsyield(func() {}).
		WithRandSource(seededRand(t.ItemID))
}

// classify turns wazero's result into a Status and a Message a person can act on.
func classify(res *runResult, err error, parent, runCtx context.Context, t Task, lim Limits) {
	item := t.ItemID
	if item == "" {
		item = "(no id)"
	}
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	switch {
	case errors.Is(context.Cause(runCtx), errOutputTooLarge):
		res.Status = StatusOutputTooLarge
		res.Message = fmt.Sprintf("stdout exceeded the %s limit in item %s", fmtBytes(uint64(lim.StdoutBytes)), item)
		return
	case parent.Err() != nil && (err != nil || runCtx.Err() != nil):
		res.Status = StatusCancelled
		res.Message = fmt.Sprintf("cancelled: %v", context.Cause(parent))
		return
	case runCtx.Err() != nil && (err != nil) && (!isExit || exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled):
		res.Status = StatusDeadline
		res.Message = fmt.Sprintf("exceeded the %v deadline in item %s", lim.Deadline, item)
		return
	case err == nil:
		res.Status = StatusOK
		return
	}
	if isExit {
		res.ExitCode = exit.ExitCode()
		switch {
		case res.ExitCode == 0:
			res.Status = StatusOK
		case res.MemoryHit:
			res.Status = StatusMemory
			res.Message = fmt.Sprintf("memory limit of %s reached in item %s (the module exited with code %d after a memory.grow was refused)%s", fmtBytes(lim.MemoryBytes), item, res.ExitCode, stderrHint(res.Stderr))
		default:
			res.Status = StatusExit
			res.Message = fmt.Sprintf("exited with code %d in item %s%s", res.ExitCode, item, stderrHint(res.Stderr))
		}
		return
	}
	msg := err.Error()
	kind, frames, ok := parseTrap(msg)
	if !ok {
		res.Status = StatusInvalidModule
		if strings.Contains(msg, "import") {
			res.Status = StatusMissingImport
		}
		res.Message = fmt.Sprintf("could not instantiate the module: %v", err)
		return
	}
	res.Trap = kind
	if hasNames(frames) {
		res.Stack = frames
	}
	at := ""
	if len(frames) > 0 {
		at = " at " + strings.Join(frames, " ← ")
	}
	if res.MemoryHit {
		res.Status = StatusMemory
		res.Message = fmt.Sprintf("memory limit of %s reached in item %s (a memory.grow was refused, then the module trapped: %s%s)%s", fmtBytes(lim.MemoryBytes), item, kind, at, stderrHint(res.Stderr))
		return
	}
	res.Status = StatusTrap
	res.Message = fmt.Sprintf("trap: %s in item %s%s%s", kind, item, at, stderrHint(res.Stderr))
}

// parseTrap splits wazero's "wasm error: <kind>\nwasm stack trace:\n\t<frame>…".
func parseTrap(msg string) (kind string, frames []string, ok bool) {
	first, rest, _ := strings.Cut(msg, "\n")
	i := strings.Index(first, "wasm error: ")
	if i < 0 {
		return "", nil, false
	}
	kind, ok = first[i+len("wasm error: "):], true
	_, trace, _ := strings.Cut(rest, "wasm stack trace:")
	for line := range strings.SplitSeq(trace, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "0x") && len(frames) > 0 { // DWARF source position of the previous frame
			frames[len(frames)-1] += " (" + line + ")"
			continue
		}
		frames = append(frames, line)
		if len(frames) == 64 {
			frames = append(frames, "…")
			break
		}
	}
	return kind, frames, true
}

// hasNames reports whether any frame is named (not just ".$17()").
func hasNames(frames []string) bool {
	for _, f := range frames {
		if !strings.HasPrefix(f, ".$") && f != "…" {
			return true
		}
	}
	return false
}

func stderrHint(stderr []byte) string {
	const n = 300
	s := strings.TrimSpace(string(stderr))
	if s == "" {
		return ""
	}
	// A Go guest's crash ends in a long goroutine dump; its first line is what a person needs.
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, "fatal error: ") || strings.HasPrefix(line, "panic: ") {
			return "; stderr: " + line + " (full log in the outcome's stderr)"
		}
	}
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return "; stderr tail: " + s
}
