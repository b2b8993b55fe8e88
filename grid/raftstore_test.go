package grid

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func openTestRaftStore(t *testing.T, path string) *raftStore {
	t.Helper()
	s, err := openRaftStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testRaftLog(i uint64) *raft.Log {
	l := &raft.Log{
		Index: i,
		Term:  i/10 + 1,
		Type:  raft.LogCommand,
		Data:  []byte{byte(i), byte(i >> 8), 'x'},
	}
	if i%2 == 0 {
		l.Extensions = []byte("ext")
		l.AppendedAt = time.Unix(1700000000, int64(i)*1000+7)
	}
	if i%5 == 0 {
		l.Data = nil
		l.Type = raft.LogNoop
	}
	return l
}

func sameRaftLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func wantIndexes(t *testing.T, s *raftStore, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("first, last = %d, %d; want %d, %d", f, l, first, last)
	}
}

func TestRaftStoreLogs(t *testing.T) {
	s := openTestRaftStore(t, filepath.Join(t.TempDir(), "raft.db"))
	defer s.Close()

	wantIndexes(t, s, 0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog on an empty store: %v, want raft.ErrLogNotFound", err)
	}

	if err := s.StoreLog(testRaftLog(1)); err != nil {
		t.Fatal(err)
	}
	var batch []*raft.Log
	for i := uint64(2); i <= 1000; i++ {
		batch = append(batch, testRaftLog(i))
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 1, 1000)
	for _, i := range []uint64{1, 2, 5, 10, 999, 1000} {
		if err := s.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if want := testRaftLog(i); !sameRaftLog(&l, want) {
			t.Fatalf("log %d: got %+v, want %+v", i, l, *want)
		}
	}
	if err := s.GetLog(1001, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog past the end: %v", err)
	}

	// Inclusive on both ends, and nothing outside the range goes.
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 101, 1000)
	if err := s.DeleteRange(500, 600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		i     uint64
		found bool
	}{{100, false}, {101, true}, {499, true}, {500, false}, {600, false}, {601, true}} {
		err := s.GetLog(c.i, &l)
		if c.found != (err == nil) || (!c.found && err != raft.ErrLogNotFound) {
			t.Fatalf("log %d after deletes: %v, want found=%v", c.i, err, c.found)
		}
	}
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bRaftLogs).Stats().KeyN
		return nil
	})
	if n != 1000-100-101 {
		t.Fatalf("%d entries left, want %d", n, 1000-100-101)
	}
	// Raft truncates a conflicting suffix with a range past the end.
	if err := s.DeleteRange(900, 1<<63); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 101, 899)
	if err := s.DeleteRange(5, 4); err != nil { // empty range: a no-op
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, 1<<64-1); err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, s, 0, 0)

	// Storing over an existing index replaces it.
	if err := s.StoreLogs([]*raft.Log{{Index: 7, Term: 1, Data: []byte("a")}, {Index: 7, Term: 2, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(7, &l); err != nil || l.Term != 2 || string(l.Data) != "b" {
		t.Fatalf("overwritten log 7: %+v, %v", l, err)
	}
}

func TestRaftStoreStable(t *testing.T) {
	s := openTestRaftStore(t, filepath.Join(t.TempDir(), "raft.db"))
	defer s.Close()

	v, err := s.Get([]byte("CurrentTerm"))
	if err == nil || err.Error() != "not found" || v != nil {
		t.Fatalf("Get of a missing key: %q, %v; raft needs nil and an error reading exactly \"not found\"", v, err)
	}
	u, err := s.GetUint64([]byte("CurrentTerm"))
	if u != 0 || err != nil {
		t.Fatalf("GetUint64 of a missing key: %d, %v; want 0, nil", u, err)
	}

	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get of an empty value: %q (nil=%v), %v; want empty and found", v, v == nil, err)
	}
	if _, err := s.Get([]byte("emptyx")); err == nil {
		t.Fatal("a key that only shares a prefix was found")
	}
	for _, x := range []uint64{0, 1, 1 << 40, 1<<64 - 1} {
		if err := s.SetUint64([]byte("CurrentTerm"), x); err != nil {
			t.Fatal(err)
		}
		if u, err := s.GetUint64([]byte("CurrentTerm")); err != nil || u != x {
			t.Fatalf("GetUint64: %d, %v; want %d", u, err, x)
		}
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); !errors.Is(err, errRaftStoreCorrupt) {
		t.Fatalf("GetUint64 of a 2-byte value: %v, want a corruption error", err)
	}
}

func TestRaftStorePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestRaftStore(t, path)
	if err := s.StoreLogs([]*raft.Log{testRaftLog(1), testRaftLog(2), testRaftLog(3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(testRaftLog(4)); err == nil {
		t.Fatal("StoreLog after Close succeeded")
	}

	s = openTestRaftStore(t, path)
	defer s.Close()
	wantIndexes(t, s, 1, 3)
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil || !sameRaftLog(&l, testRaftLog(2)) {
		t.Fatalf("log 2 after reopen: %+v, %v", l, err)
	}
	if u, err := s.GetUint64([]byte("CurrentTerm")); err != nil || u != 9 {
		t.Fatalf("term after reopen: %d, %v", u, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n3" {
		t.Fatalf("vote after reopen: %q, %v", v, err)
	}
}

func TestRaftStoreRefusesCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestRaftStore(t, path)
	defer s.Close()
	if err := s.StoreLogs([]*raft.Log{testRaftLog(1), testRaftLog(2)}); err != nil {
		t.Fatal(err)
	}
	good := encodeRaftLog(testRaftLog(3))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-6] ^= 0x40 // inside the data
	cases := map[uint64][]byte{
		3: []byte("garbage bytes, not a raft log"),
		4: good[:len(good)-3], // truncated
		5: flipped,
		6: encodeRaftLog(testRaftLog(60)), // a good record under the wrong key
		7: {},
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, v := range cases {
			if err := tx.Bucket(bRaftLogs).Put(raftLogKey(i), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		var l raft.Log
		err := s.GetLog(i, &l)
		if !errors.Is(err, errRaftStoreCorrupt) {
			t.Fatalf("log %d: %v, want a corruption error", i, err)
		}
		if want := fmt.Sprintf("log %d: ", i); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Fatalf("log %d: %q does not name the index and the file", i, err)
		}
		t.Logf("log %d: %v", i, err)
	}
	// The good ones still read.
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil {
		t.Fatal(err)
	}

	// A key that is not an index.
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bRaftLogs).Put([]byte("zz"), []byte("x")) })
	if _, err := s.LastIndex(); !errors.Is(err, errRaftStoreCorrupt) {
		t.Fatalf("LastIndex over a bad key: %v", err)
	}
}

func TestRaftStoreSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestRaftStore(t, path)
	defer s.Close()
	start := time.Now()
	s2, err := openRaftStore(path)
	if err == nil {
		s2.Close()
		t.Fatal("a second open of the same file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "data dir in use by another gridnode?") {
		t.Fatalf("unclear error: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("second open failed after %v, want about 1s", d)
	}
	t.Log(err)
}

func TestRaftStoreRecordRoundTrip(t *testing.T) {
	for _, l := range []*raft.Log{
		{},
		{Index: 1<<64 - 1, Term: 1<<64 - 1, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{0xff}, 70000), Extensions: []byte{0}},
		{Index: 3, AppendedAt: time.Unix(0, -5)}, // before 1970 still round-trips
		{Index: 4, AppendedAt: time.Unix(0, 0)},  // the epoch is not "unset"
		testRaftLog(8),
	} {
		got, err := decodeRaftLog(l.Index, encodeRaftLog(l))
		if err != nil {
			t.Fatal(err)
		}
		if !sameRaftLog(&got, l) || got.AppendedAt.IsZero() != l.AppendedAt.IsZero() {
			t.Fatalf("round trip of %+v gave %+v", l, got)
		}
	}
}

func FuzzDecodeRaftLog(f *testing.F) {
	for _, l := range []*raft.Log{
		{},
		testRaftLog(1),
		testRaftLog(2),
		testRaftLog(10),
		{Index: 300, Term: 7, Type: raft.LogConfiguration, Data: []byte("servers"), Extensions: []byte("e"), AppendedAt: time.Unix(1, 2)},
	} {
		f.Add(l.Index, encodeRaftLog(l))
	}
	f.Add(uint64(1), []byte{})
	f.Add(uint64(1), []byte{1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(0), []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, index uint64, rec []byte) {
		l, err := decodeRaftLog(index, rec)
		if err != nil {
			if want := fmt.Sprintf("log %d: ", index); !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error %q does not name the index", err)
			}
			return
		}
		if l.Index != index {
			t.Fatalf("decoded index %d under key %d", l.Index, index)
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := decodeRaftLog(index, encodeRaftLog(&l))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !sameRaftLog(&again, &l) {
			t.Fatalf("round trip changed %+v into %+v", l, again)
		}
	})
}
