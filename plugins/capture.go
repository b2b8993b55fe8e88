package plugins

import "sync"

// capWriter keeps at most limit bytes of stdout. The first write that would
// pass the limit keeps the prefix that fits, calls onOver (which cancels the
// execution) and fails, as does every later write.
type capWriter struct {
	limit  int
	onOver func()

	mu   sync.Mutex // the guest writes; a watchdog may read
	buf  []byte
	over bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over {
		return 0, errOutputTooLarge
	}
	if room := w.limit - len(w.buf); len(p) > room {
		w.buf = append(w.buf, p[:room]...)
		w.over = true
		w.onOver()
		return room, errOutputTooLarge
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *capWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf[:len(w.buf):len(w.buf)]
}

// tailWriter keeps the last limit bytes written. It never fails: a chatty log
// must not change the outcome.
type tailWriter struct {
	limit int

	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if w.limit <= 0 {
		w.truncated = w.truncated || n > 0
		return n, nil
	}
	if len(p) >= w.limit {
		w.truncated = w.truncated || len(p) > w.limit || len(w.buf) > 0
		w.buf = append(w.buf[:0], p[len(p)-w.limit:]...)
		return n, nil
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.limit { // compact rarely: amortised O(1) per byte
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.limit:]...)
		w.truncated = true
	}
	return n, nil
}

func (w *tailWriter) tail() ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, tr := w.buf, w.truncated
	if len(b) > w.limit {
		b, tr = b[len(b)-w.limit:], true
	}
	return append([]byte(nil), b...), tr
}
