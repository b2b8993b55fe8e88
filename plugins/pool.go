package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// pool supervises long-lived worker processes, one execution at a time each.
// Sandbox.slots bounds how many are busy; idle ones wait in mu.idle.
type pool struct {
	command []string
	dir     string
	maxIdle int // = Workers: more idle workers than slots are never needed
	log     *slog.Logger

	bg sync.WaitGroup // replacement starters
	mu struct {
		sync.Mutex
		idle   []*worker
		closed bool
	}
}

// worker is one worker process and the goroutines that drain its pipes.
type worker struct {
	cmd    *exec.Cmd
	pid    int
	in     *os.File      // its stdin
	enc    *msgEncoder   // frames to its stdin
	msgs   chan *message // frames from its stdout; closed at EOF or on a bad frame
	stderr *tailWriter   // its stderr tail, for crash reports
	exited chan struct{} // closed after the process was reaped
	execs  int
	loaded map[Hash]bool // modules it reported loaded (it may have evicted some since)
}

const workerStartTimeout = 30 * time.Second

// moduleLoadTimeout bounds how long a worker may take to load (compile) a
// module before the execution's deadline starts.
const moduleLoadTimeout = 5 * time.Minute

func newPool(command []string, dir string, workers int, log *slog.Logger) *pool {
	return &pool{command: command, dir: dir, maxIdle: workers, log: log}
}

// start launches a worker and waits for its ready frame.
func (p *pool) start(ctx context.Context) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(p.command[0], p.command[1:]...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stdin, cmd.Stdout = inR, outW
	w := &worker{cmd: cmd, in: inW, enc: newMsgEncoder(inW), msgs: make(chan *message, 1), stderr: &tailWriter{limit: 8 << 10}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	prepareWorker(cmd)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("plugins: start worker %q: %w", p.command, err)
	}
	w.pid = cmd.Process.Pid
	lowerPriority(w.pid)
	go func() { // reaper
		cmd.Wait()
		close(w.exited)
	}()
	go func() { // reader
		defer close(w.msgs)
		defer outR.Close()
		dec := newMsgDecoder(outR)
		for {
			m, err := dec.recv()
			if err != nil {
				return
			}
			w.msgs <- m
		}
	}()
	if err := w.enc.send(&message{Kind: msgInit, Dir: p.dir}); err != nil {
		p.kill(w)
		return nil, fmt.Errorf("plugins: init worker: %w%s", err, stderrHint(w.stderrTail()))
	}
	t := time.NewTimer(workerStartTimeout)
	defer t.Stop()
	select {
	case m, ok := <-w.msgs:
		if ok && m.Kind == msgReady {
			return w, nil
		}
		p.kill(w)
		return nil, fmt.Errorf("plugins: worker %q did not start (no ready frame; is MaybeServeWorker called first in main/TestMain?)%s", p.command, stderrHint(w.stderrTail()))
	case <-t.C:
		p.kill(w)
		return nil, fmt.Errorf("plugins: worker %q not ready after %v", p.command, workerStartTimeout)
	case <-ctx.Done():
		p.kill(w)
		return nil, ctx.Err()
	}
}

func (w *worker) stderrTail() []byte { b, _ := w.stderr.tail(); return b }

// kill ends a worker and waits until it is reaped.
func (p *pool) kill(w *worker) {
	killWorker(w.cmd)
	w.in.Close()
	<-w.exited
	for range w.msgs { // drain so the reader exits
	}
}

// retire ends a worker politely: EOF on its stdin makes it exit.
func (p *pool) retire(w *worker) {
	w.in.Close()
	select {
	case <-w.exited:
	case <-time.After(2 * time.Second):
		killWorker(w.cmd)
		<-w.exited
	}
	for range w.msgs {
	}
}

func (p *pool) get(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.mu.idle); n > 0 {
		w := p.mu.idle[n-1]
		p.mu.idle = p.mu.idle[:n-1]
		p.mu.Unlock()
		return w, nil
	}
	p.mu.Unlock()
	return p.start(ctx)
}

func (p *pool) put(w *worker) {
	p.mu.Lock()
	if !p.mu.closed && len(p.mu.idle) < p.maxIdle {
		p.mu.idle = append(p.mu.idle, w)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.retire(w)
}

// replace starts a worker in the background to take a lost one's place, so
// the next execution does not pay for the start.
func (p *pool) replace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), workerStartTimeout)
		defer cancel()
		w, err := p.start(ctx)
		if err != nil {
			p.log.Warn("could not start a replacement worker", "err", err)
			return
		}
		p.put(w)
	}()
}

// execute runs t on a worker, killing it at deadline + Grace or on ctx end.
//
// Each worker keeps its scratch directories under its own subdirectory of
// scratchRoot; a killed worker's subdirectory is removed with it.
func (p *pool) execute(ctx context.Context, t Task, scratchRoot string) Outcome {
	start := time.Now()
	w, err := p.get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{Status: StatusCancelled, Message: fmt.Sprintf("cancelled while starting a worker: %v", context.Cause(ctx))}
		}
		return Outcome{Status: StatusCrashed, Message: err.Error()}
	}
	scratch := filepath.Join(scratchRoot, "w"+strconv.Itoa(w.pid))
	w.execs++
	id := uint64(w.execs)
	loaded := w.loaded[t.Module]
	if err := w.enc.send(&message{Kind: msgRun, ID: id, Task: &t, Scratch: scratch, Loaded: loaded}); err != nil {
		p.kill(w)
		p.replace()
		os.RemoveAll(scratch)
		return Outcome{Status: StatusCrashed, Message: fmt.Sprintf("worker %d did not take the task: %v%s", w.pid, err, stderrHint(w.stderrTail()))}
	}
	// Until the worker says the module is loaded, allow for a compilation.
	wait := moduleLoadTimeout
	if loaded {
		wait = t.Limits.Deadline + Grace
	}
	overrun := time.NewTimer(wait)
	defer overrun.Stop()
	cancelSent := false
	done := ctx.Done()
	for {
		select {
		case m, ok := <-w.msgs:
			if ok && m.Kind == msgLoading && m.ID == id {
				delete(w.loaded, t.Module)
				if !cancelSent {
					overrun.Reset(moduleLoadTimeout)
				}
				continue
			}
			if ok && m.Kind == msgCheckpoint && m.ID == id {
				if t.OnCheckpoint != nil {
					t.OnCheckpoint(m.Sealed)
				}
				continue
			}
			if ok && m.Kind == msgStarted && m.ID == id {
				start = time.Now()
				if w.loaded == nil {
					w.loaded = map[Hash]bool{}
				}
				w.loaded[t.Module] = true
				if !cancelSent {
					overrun.Reset(t.Limits.Deadline + Grace)
				}
				continue
			}
			if !ok || m.Kind != msgResult || m.Result == nil || m.ID != id {
				p.kill(w)
				p.replace()
				os.RemoveAll(scratch)
				if cancelSent {
					return Outcome{Status: StatusCancelled, Message: fmt.Sprintf("cancelled: %v", context.Cause(ctx))}
				}
				return Outcome{Status: StatusCrashed, Message: fmt.Sprintf("worker %d died during the execution (%s)%s", w.pid, exitDescription(w), stderrHint(w.stderrTail()))}
			}
			r := m.Result
			if r.Abandoned { // the guest is still running in it
				p.kill(w)
				p.replace()
				os.RemoveAll(scratch)
				if r.Status == StatusDeadline {
					r.Message += fmt.Sprintf(" (killed the worker after %v)", time.Since(start).Round(time.Millisecond))
				}
				return r.Outcome
			}
			if r.MemoryHit || w.execs >= recycleAfter {
				p.bg.Add(1)
				go func() { // its heap may hold the module's memory; start afresh
					defer p.bg.Done()
					p.retire(w)
					os.RemoveAll(scratch)
				}()
				p.replace()
			} else {
				p.put(w)
			}
			return r.Outcome
		case <-overrun.C:
			p.kill(w)
			p.replace()
			os.RemoveAll(scratch)
			if cancelSent {
				return Outcome{Status: StatusCancelled, Message: fmt.Sprintf("cancelled: %v (killed the worker after %v)", context.Cause(ctx), time.Since(start).Round(time.Millisecond))}
			}
			return Outcome{
				Status:   StatusDeadline,
				Message:  fmt.Sprintf("exceeded the %v deadline in item %s (killed the worker after %v)", t.Limits.Deadline, itemName(t.ItemID), time.Since(start).Round(time.Millisecond)),
				Duration: time.Since(start),
			}
		case <-done:
			done = nil
			if err := w.enc.send(&message{Kind: msgCancel, ID: id}); err != nil {
				p.kill(w)
				p.replace()
				os.RemoveAll(scratch)
				return Outcome{Status: StatusCancelled, Message: fmt.Sprintf("cancelled: %v", context.Cause(ctx))}
			}
			// Give the worker Grace to stop cooperatively, then kill it.
			cancelSent = true
			overrun.Reset(Grace)
		}
	}
}

func itemName(id string) string {
	if id == "" {
		return "(no id)"
	}
	return id
}

func exitDescription(w *worker) string {
	select {
	case <-w.exited:
		if st := w.cmd.ProcessState; st != nil {
			return st.String()
		}
	case <-time.After(time.Second):
	}
	return "no exit status"
}

// close stops every idle worker and waits for replacement starters. Busy
// workers are not tracked here: Sandbox.Close waits for executions first.
func (p *pool) close() error {
	p.mu.Lock()
	p.mu.closed = true
	idle := p.mu.idle
	p.mu.idle = nil
	p.mu.Unlock()
	p.bg.Wait()
	var wg sync.WaitGroup
	for _, w := range idle {
		wg.Add(1)
		go func() { defer wg.Done(); p.retire(w) }()
	}
	wg.Wait()
	return errors.Join()
}
