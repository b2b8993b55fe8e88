package grid

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/gridnode/gridnode/transport"
)

// recentChanges is how many committed changes a node keeps to answer
// "what changed since epoch e" with a delta instead of the whole view.
const recentChanges = 256

// fsm is the monitors' replicated state machine: the view. Every committed
// change goes through Apply, the one epoch transition function.
type fsm struct {
	// committed is called after each change that moved the epoch, on raft's
	// apply goroutine. It must not wait on raft.
	committed func(View, Change)

	mu struct {
		sync.Mutex
		view View
	}
}

// applyResult is what raft.Apply's future returns.
type applyResult struct {
	view View
	err  error
}

func (f *fsm) Apply(l *raft.Log) any {
	var c Change
	if err := transport.Unmarshal(l.Data, &c); err != nil {
		return applyResult{err: fmt.Errorf("grid: undecodable change at index %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	before := f.mu.view
	after, err := Apply(before, c)
	if err == nil {
		f.mu.view = after
	}
	f.mu.Unlock()
	if err != nil {
		return applyResult{view: before, err: err}
	}
	if after.Epoch != before.Epoch && f.committed != nil {
		c.Epoch = after.Epoch
		f.committed(after, c)
	}
	return applyResult{view: after}
}

func (f *fsm) view() View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.view
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return viewSnapshot{view: f.view().Clone()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return err
	}
	var v View
	if err := transport.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("grid: undecodable view snapshot: %w", err)
	}
	f.mu.Lock()
	f.mu.view = v
	f.mu.Unlock()
	if f.committed != nil {
		f.committed(v, Change{})
	}
	return nil
}

type viewSnapshot struct{ view View }

func (s viewSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := transport.Marshal(s.view)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (viewSnapshot) Release() {}
