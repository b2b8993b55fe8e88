package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// WorkerEnv is the environment variable that turns a gridnode binary (or a
// test binary) into a worker: MaybeServeWorker serves when it is "1".
const WorkerEnv = "GRIDNODE_WORKER"

// MaybeServeWorker serves the worker protocol on stdin/stdout and exits the
// process when GRIDNODE_WORKER=1; otherwise it returns at once. Call it first
// thing in main() and in TestMain of every package whose tests run a Sandbox
// with process isolation.
func MaybeServeWorker() {
	if os.Getenv(WorkerEnv) != "1" {
		return
	}
	out := os.Stdout
	os.Stdout = os.Stderr // a stray print must not corrupt the protocol
	err := ServeWorker(context.Background(), os.Stdin, out)
	if errors.Is(err, errAbandoned) {
		os.Exit(0) // the supervisor kills us anyway; do not wait for the guest
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gridnode worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// maxWorkerModules bounds the compiled modules a worker keeps.
const maxWorkerModules = 32

// ServeWorker runs one execution at a time for a supervising Sandbox. It
// returns nil when in reaches EOF (the supervisor closed the pipe or died).
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	dec := newMsgDecoder(in)
	init, err := dec.recv()
	if err != nil {
		return fmt.Errorf("read init: %w", err)
	}
	if init.Kind != msgInit || init.Dir == "" {
		return fmt.Errorf("first frame is kind %d, want init with a directory", init.Kind)
	}
	eng, err := newEngine(ctx, filepath.Join(init.Dir, "cache"), false)
	if err != nil {
		return err
	}
	defer eng.close(context.Background())
	st := store{dir: filepath.Join(init.Dir, "modules")}
	// The main loop and the guest's goroutine (its checkpoints) both send.
	enc := newMsgEncoder(out)
	var sendMu sync.Mutex
	send := func(m *message) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return enc.send(m)
	}
	if err := send(&message{Kind: msgReady, ID: uint64(os.Getpid())}); err != nil {
		return err
	}

	msgs := make(chan *message)
	readErr := make(chan error, 1)
	go func() {
		for {
			m, err := dec.recv()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	type result struct {
		id  uint64
		res runResult
	}
	results := make(chan result, 1)
	type load struct {
		id      uint64
		t       Task
		scratch string
		c       *compiled
		err     error
	}
	loaded := make(chan load, 1)
	var (
		busy     bool
		curID    uint64
		cur      *execution
		deadline <-chan time.Time
		timer    *time.Timer
	)
	// start runs a loaded module with its deadline running from now.
	start := func(l load) {
		cur = newExecution(l.t)
		// Each checkpoint crosses before the result, which is sent only
		// after the guest's last save returned. A failed send shows up on
		// the main loop's next send, or as the supervisor's EOF.
		cur.st.ckpt.deliver = func(sealed []byte) {
			send(&message{Kind: msgCheckpoint, ID: l.id, Sealed: sealed})
		}
		timer = time.NewTimer(cur.lim.Deadline)
		deadline = timer.C
		go func(x *execution) {
			results <- result{l.id, eng.runExecution(ctx, l.c, x, l.scratch)}
		}(cur)
	}
	// abandon reports the running execution as s and tells the supervisor to
	// kill this worker: its goroutine is still in wasm code and cannot be
	// stopped (workers run without cooperative checks, see doc.go).
	abandon := func(s Status, msg string) error {
		r := cur.snapshot(s, msg)
		r.Abandoned = true
		if err := send(&message{Kind: msgResult, ID: curID, Result: &r}); err != nil {
			return err
		}
		return errAbandoned
	}
	for {
		select {
		case m := <-msgs:
			switch m.Kind {
			case msgRun:
				if busy || m.Task == nil {
					return fmt.Errorf("run %d while busy with %d (or without a task)", m.ID, curID)
				}
				busy, curID = true, m.ID
				l := load{id: m.ID, t: *m.Task, scratch: m.Scratch}
				if l.c = eng.lookup(l.t.Module); l.c != nil && m.Loaded {
					// The supervisor knows the module is loaded here and
					// started its deadline already: no started frame.
					start(l)
					continue
				}
				if m.Loaded { // evicted since: the supervisor must wait for a load again
					if err := send(&message{Kind: msgLoading, ID: m.ID}); err != nil {
						return err
					}
				}
				go func(l load) { // loading the module does not count against the deadline
					l.c, l.err = workerModule(ctx, eng, st, l.t.Module)
					loaded <- l
				}(l)
			case msgCancel:
				if busy && m.ID == curID && cur != nil {
					return abandon(StatusCancelled, "cancelled by the node")
				}
			default:
				return fmt.Errorf("unexpected frame kind %d", m.Kind)
			}
		case l := <-loaded:
			if l.err != nil {
				r := runResult{Outcome: moduleErrorOutcome(l.t.Module, l.err)}
				results <- result{l.id, r}
				continue
			}
			if err := send(&message{Kind: msgStarted, ID: l.id}); err != nil {
				return err
			}
			start(l)
		case <-deadline:
			return abandon(StatusDeadline, fmt.Sprintf("exceeded the %v deadline in item %s", cur.lim.Deadline, itemName(cur.t.ItemID)))
		case r := <-results:
			busy, deadline, cur = false, nil, nil
			if timer != nil {
				timer.Stop()
			}
			if err := send(&message{Kind: msgResult, ID: r.id, Result: &r.res}); err != nil {
				return err
			}
		case err := <-readErr:
			if busy {
				return fmt.Errorf("supervisor gone during an execution: %w", err)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// errAbandoned: ServeWorker gave up on an execution that is still running;
// the process must exit (MaybeServeWorker does) or be killed.
var errAbandoned = errors.New("abandoned a running execution")

// workerModule returns the compiled module, compiling it on first use (a hit
// in the shared on-disk cache when the supervisor validated it).
func workerModule(ctx context.Context, eng *engine, st store, h Hash) (*compiled, error) {
	if c := eng.lookup(h); c != nil {
		return c, nil
	}
	wasm, err := st.read(h)
	if err != nil {
		return nil, err
	}
	eng.mu.Lock()
	if len(eng.mods) >= maxWorkerModules {
		for h, old := range eng.mods { // evict an arbitrary one
			delete(eng.mods, h)
			old.cm.Close(ctx)
			break
		}
	}
	eng.mu.Unlock()
	return eng.compile(ctx, h, wasm, true)
}
