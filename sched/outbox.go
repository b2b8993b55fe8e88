package sched

import (
	"sync"
	"time"
)

// outbox batches messages to one destination. Whoever pushes never waits:
// the first push to an idle outbox starts a goroutine that sends everything
// queued, one batch at a time, until the queue is empty; what arrives while
// a batch is in flight goes in the next. Under load batches grow, so that a
// round trip carries many items; when idle, one item goes at once.
type outbox[T any] struct {
	max   int                 // items per batch
	size  func(T) int         // bytes an item adds to a batch; nil: none counted
	bytes int                 // bytes per batch (when size is set)
	send  func(batch []T)     // runs on the outbox's goroutine; handles its own errors
	spawn func(f func()) bool // starts a goroutine; false once the owner is closing
	// linger, when set, holds the first batch back that long, so that
	// what is not urgent can ride on another message (see steal).
	linger time.Duration
	mu     sync.Mutex
	queue  []T
	busy   bool
}

func (o *outbox[T]) push(items ...T) {
	o.mu.Lock()
	o.queue = append(o.queue, items...)
	start := !o.busy && len(o.queue) > 0
	if start {
		o.busy = true
	}
	o.mu.Unlock()
	if start && !o.spawn(o.drain) {
		o.mu.Lock()
		o.busy = false
		o.queue = nil
		o.mu.Unlock()
	}
}

func (o *outbox[T]) drain() {
	if o.linger > 0 {
		time.Sleep(o.linger)
	}
	for {
		o.mu.Lock()
		n, total := 0, 0
		for n < len(o.queue) && n < o.max {
			if o.size != nil {
				s := o.size(o.queue[n])
				if n > 0 && total+s > o.bytes {
					break
				}
				total += s
			}
			n++
		}
		if n == 0 {
			o.busy = false
			o.queue = nil
			o.mu.Unlock()
			return
		}
		batch := make([]T, n)
		copy(batch, o.queue)
		clear(o.queue[:n])
		o.queue = o.queue[n:]
		o.mu.Unlock()
		o.send(batch)
	}
}

// steal takes everything queued, to be delivered some other way.
func (o *outbox[T]) steal() []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queue
	o.queue = nil
	return q
}

// pending is how many items wait to be sent.
func (o *outbox[T]) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// outboxes keeps one outbox per destination.
type outboxes[T any] struct {
	mu  sync.Mutex
	m   map[string]*outbox[T]
	new func(dest string) *outbox[T]
}

func (os *outboxes[T]) to(dest string) *outbox[T] {
	os.mu.Lock()
	defer os.mu.Unlock()
	if os.m == nil {
		os.m = map[string]*outbox[T]{}
	}
	o := os.m[dest]
	if o == nil {
		o = os.new(dest)
		os.m[dest] = o
	}
	return o
}
