package grid

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadIdentityPersistsAndBumps(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadIdentity(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Incarnation != 1 || ValidNodeID(a.NodeID) != nil {
		t.Fatalf("first start = %+v", a)
	}
	b, err := LoadIdentity(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if b.NodeID != a.NodeID || b.Incarnation != 2 {
		t.Fatalf("second start = %+v, want ID %s incarnation 2", b, a.NodeID)
	}
	if _, err := LoadIdentity(dir, "other"); !errors.Is(err, ErrBadNodeID) {
		t.Fatalf("another ID on the same data dir: err = %v", err)
	}
	if c, err := LoadIdentity(dir, a.NodeID); err != nil || c.Incarnation != 3 {
		t.Fatalf("same ID given: %+v %v", c, err)
	}
}

func TestLoadIdentityGivenAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadIdentity(dir, "Bad_ID"); !errors.Is(err, ErrBadNodeID) {
		t.Fatalf("bad ID accepted: %v", err)
	}
	id, err := LoadIdentity(dir, "node-1")
	if err != nil || id.NodeID != "node-1" {
		t.Fatalf("%+v %v", id, err)
	}
	os.WriteFile(filepath.Join(dir, "incarnation"), []byte("x"), 0o600)
	if _, err := LoadIdentity(dir, ""); err == nil {
		t.Fatal("corrupt incarnation accepted")
	}
}

func TestParseLabels(t *testing.T) {
	m, err := ParseLabels("host=h1, zone=z2")
	if err != nil || m["host"] != "h1" || m["zone"] != "z2" || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"host", "=x", "host=", "a=1,a=2"} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q) accepted", bad)
		}
	}
	if m, err := ParseLabels(""); err != nil || len(m) != 0 {
		t.Fatalf("empty: %v %v", m, err)
	}
}
