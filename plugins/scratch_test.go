package plugins

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestScratchDirsReuseOnlyUntouched(t *testing.T) {
	root := t.TempDir()
	var s scratchDirs
	dir, stamp, err := s.get(root)
	if err != nil {
		t.Fatal(err)
	}
	s.put(root, dir, stamp) // untouched: kept
	again, stamp2, err := s.get(root)
	if err != nil || again != dir {
		t.Fatalf("untouched dir not reused: %s vs %s (%v)", again, dir, err)
	}

	// A guest writes a file and sets the directory's times back:
	// the change time still moved, so the directory is not reused.
	st, _ := os.Stat(again)
	time.Sleep(10 * time.Millisecond) // ctime granularity on coarse-clock filesystems
	f := filepath.Join(again, "leak.txt")
	os.WriteFile(f, []byte("secret"), 0o600)
	os.Chtimes(again, st.ModTime(), st.ModTime())
	s.put(root, again, stamp2)
	if _, err := os.Stat(again); !os.IsNotExist(err) {
		t.Fatalf("touched scratch dir survived: %v", err)
	}
	third, _, err := s.get(root)
	if err != nil || third == again {
		t.Fatalf("touched dir handed out again: %s (%v)", third, err)
	}
	if ents, _ := os.ReadDir(third); len(ents) != 0 {
		t.Fatalf("new scratch dir not empty: %v", ents)
	}
}
