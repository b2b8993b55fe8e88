package plugins

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// scratchDirs hands out empty scratch directories (mounted at /tmp) and takes
// back the ones an execution left untouched, so that most executions cost two
// stats instead of a mkdir and a recursive removal (together the largest part
// of an execution's overhead on some filesystems).
//
// "Untouched" is judged by the directory's change time, not its modification
// time: a guest can set a directory's mtime back with WASI's
// path_filestat_set_times, but every change to the directory — an entry added
// or removed, its times set — moves its ctime, and nothing can set that back.
type scratchDirs struct {
	mu   sync.Mutex
	free map[string][]string // root → clean directories under it
	seq  uint64
}

// get returns a clean directory under root and a stamp of its state.
func (s *scratchDirs) get(root string) (dir string, stamp dirStamp, err error) {
	s.mu.Lock()
	if f := s.free[root]; len(f) > 0 {
		dir = f[len(f)-1]
		s.free[root] = f[:len(f)-1]
	} else {
		s.seq++
		dir = filepath.Join(root, strconv.FormatUint(s.seq, 10))
	}
	s.mu.Unlock()
	if stamp, err = stampOf(dir); err == nil {
		return dir, stamp, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", dirStamp{}, err
	}
	stamp, err = stampOf(dir)
	return dir, stamp, err
}

// put takes dir back after an execution: kept for the next one if nothing
// changed in it, removed otherwise.
func (s *scratchDirs) put(root, dir string, before dirStamp) {
	if after, err := stampOf(dir); err == nil && after == before && before.valid {
		s.mu.Lock()
		if s.free == nil {
			s.free = map[string][]string{}
		}
		s.free[root] = append(s.free[root], dir)
		s.mu.Unlock()
		return
	}
	os.RemoveAll(dir)
}
