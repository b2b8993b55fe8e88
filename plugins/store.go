package plugins

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// store keeps module bytes at dir/<hex>.wasm. Writes go through a temp file,
// fsync and rename, so a reader never sees a partial module.
type store struct{ dir string }

func (st store) path(h Hash) string { return filepath.Join(st.dir, h.hex()+".wasm") }

func (st store) has(h Hash) bool {
	_, err := os.Stat(st.path(h))
	return err == nil
}

// read returns the module bytes after checking they still hash to h.
func (st store) read(h Hash) ([]byte, error) {
	b, err := os.ReadFile(st.path(h))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%w: %s is not stored on this node", ErrModuleNotFound, h)
	}
	if err != nil {
		return nil, fmt.Errorf("plugins: read module %s: %w", h, err)
	}
	if got := HashOf(b); got != h {
		return nil, fmt.Errorf("%w: stored file for %s hashes to %s (corrupt; delete %s)", ErrModuleNotFound, h, got, st.path(h))
	}
	return b, nil
}

func (st store) write(h Hash, wasm []byte) error {
	final := st.path(h)
	if old, err := os.ReadFile(final); err == nil && bytes.Equal(old, wasm) {
		return nil
	}
	f, err := os.CreateTemp(st.dir, h.hex()+".*.tmp")
	if err != nil {
		return fmt.Errorf("plugins: store module %s: %w", h, err)
	}
	tmp := f.Name()
	_, err = f.Write(wasm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("plugins: store module %s: %w", h, err)
	}
	if d, err := os.Open(st.dir); err == nil {
		d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return nil
}
