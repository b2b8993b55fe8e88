package grid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// raftStore is the monitors' raft log and stable store in one bbolt file.
// Every write is fsynced before it returns: raft's safety (a vote or an
// acknowledged entry survives a crash) depends on it.
//
// We write it ourselves because raft-boltdb does not build with raft v1.8.0.
//
// Layout:
//
//	raft-logs/<index, uint64 big-endian> → record (see encodeRaftLog)
//	raft-stable/<key>                    → value as raft gave it
type raftStore struct {
	db   *bolt.DB
	path string
}

var (
	_ raft.LogStore    = (*raftStore)(nil)
	_ raft.StableStore = (*raftStore)(nil)
)

var (
	bRaftLogs   = []byte("raft-logs")
	bRaftStable = []byte("raft-stable")
)

// errRaftStoreCorrupt is wrapped by every error about bytes in the store that
// do not decode: the file was damaged or written by something else. Such a
// monitor must not vote; an operator restores or wipes its raft state.
var errRaftStoreCorrupt = errors.New("grid: corrupt raft store")

// errRaftKeyNotFound is what StableStore.Get returns for a missing key. raft
// compares err.Error() with "not found" (api.go NewRaft, raft.go
// requestVote), so the text is part of the contract and must not change.
var errRaftKeyNotFound = errors.New("not found")

// openRaftStore opens (or creates, mode 0600) the store at path. A second
// opener of the same file, in this or another process, fails after a second.
func openRaftStore(path string) (*raftStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second,
		NoSync:  false, // fsync every commit: raft's safety depends on it
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("grid: open raft store %s: the file stays locked after 1s: data dir in use by another gridnode? (%w)", path, err)
		}
		return nil, fmt.Errorf("grid: open raft store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bRaftLogs, bRaftStable} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("grid: init raft store %s: %w", path, err)
	}
	return &raftStore{db: db, path: path}, nil
}

// Close closes the file. Calls after Close fail.
func (s *raftStore) Close() error { return s.db.Close() }

func raftLogKey(index uint64) []byte { return binary.BigEndian.AppendUint64(nil, index) }

func raftLogIndex(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("log key %x is not an 8-byte index", k)
	}
	return binary.BigEndian.Uint64(k), nil
}

func (s *raftStore) corrupt(err error) error {
	return fmt.Errorf("%w %s: %v", errRaftStoreCorrupt, s.path, err)
}

// FirstIndex returns the first index written, 0 for an empty log.
func (s *raftStore) FirstIndex() (uint64, error) {
	return s.edgeIndex(func(c *bolt.Cursor) ([]byte, []byte) { return c.First() })
}

// LastIndex returns the last index written, 0 for an empty log.
func (s *raftStore) LastIndex() (uint64, error) {
	return s.edgeIndex(func(c *bolt.Cursor) ([]byte, []byte) { return c.Last() })
}

func (s *raftStore) edgeIndex(move func(*bolt.Cursor) ([]byte, []byte)) (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := move(tx.Bucket(bRaftLogs).Cursor())
		if k == nil {
			return nil
		}
		var err error
		idx, err = raftLogIndex(k)
		if err != nil {
			return s.corrupt(err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errRaftStoreCorrupt) {
			return 0, err
		}
		return 0, fmt.Errorf("grid: raft store %s: %w", s.path, err)
	}
	return idx, nil
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound
// unwrapped: raft's replication compares it with ==.
func (s *raftStore) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bRaftLogs).Get(raftLogKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		// decodeRaftLog copies: v lives only as long as the transaction.
		got, err := decodeRaftLog(index, v)
		if err != nil {
			return s.corrupt(err)
		}
		*log = got
		return nil
	})
}

// StoreLog stores one entry.
func (s *raftStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one transaction: all or none of them.
func (s *raftStore) StoreLogs(logs []*raft.Log) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRaftLogs)
		for _, l := range logs {
			if err := b.Put(raftLogKey(l.Index), encodeRaftLog(l)); err != nil {
				return fmt.Errorf("log %d: %w", l.Index, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("grid: raft store %s: store logs: %w", s.path, err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, both included.
func (s *raftStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	start := raftLogKey(min)
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bRaftLogs).Cursor()
		// Seek again after each delete instead of calling Next: everything
		// below min stays, so the next key at or after min is the next victim.
		// This keeps clear of cursor-after-delete subtleties.
		for k, _ := c.Seek(start); k != nil; k, _ = c.Seek(start) {
			idx, err := raftLogIndex(k)
			if err != nil {
				return s.corrupt(err)
			}
			if idx > max {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("grid: raft store %s: delete logs %d-%d: %w", s.path, min, max, err)
	}
	return nil
}

// Set stores val under key.
func (s *raftStore) Set(key, val []byte) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bRaftStable).Put(key, val)
	})
	if err != nil {
		return fmt.Errorf("grid: raft store %s: set %q: %w", s.path, key, err)
	}
	return nil
}

// Get returns the value of key, or an error whose text is exactly "not
// found" (see errRaftKeyNotFound) when the key is missing. A key stored with
// an empty value reads back as an empty, non-nil slice.
func (s *raftStore) Get(key []byte) ([]byte, error) {
	var val []byte
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		// A cursor tells a missing key from an empty value.
		k, v := tx.Bucket(bRaftStable).Cursor().Seek(key)
		if k != nil && bytes.Equal(k, key) {
			found = true
			val = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("grid: raft store %s: get %q: %w", s.path, key, err)
	}
	if !found {
		return nil, errRaftKeyNotFound
	}
	return val, nil
}

// SetUint64 stores val under key, 8 bytes big-endian.
func (s *raftStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value of key, or 0 and no error for a missing key:
// that is what raft.StableStore documents and raft.InmemStore does. (Every
// raft call site also tolerates an error reading "not found", but none needs
// it.)
func (s *raftStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err == errRaftKeyNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, s.corrupt(fmt.Errorf("value of %q has %d bytes, want 8", key, len(v)))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Record format, version 1. Integers are varints (encoding/binary):
//
//	byte     version (1)
//	uvarint  index
//	uvarint  term
//	byte     type
//	uvarint  len(data), data
//	uvarint  len(extensions), extensions
//	byte     1 if AppendedAt is set, else 0
//	varint   AppendedAt as UnixNano (only if set)
//	uint32   CRC-32C of everything before it, big-endian
//
// The checksum catches flipped bits inside data, which the structure alone
// cannot: bbolt checksums only its meta pages.
const raftLogVersion = 1

var crc32c = crc32.MakeTable(crc32.Castagnoli)

func encodeRaftLog(l *raft.Log) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(l.Data)+len(l.Extensions)+1+binary.MaxVarintLen64+4)
	b = append(b, raftLogVersion)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	if l.AppendedAt.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, l.AppendedAt.UnixNano())
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

// decodeRaftLog decodes the record stored under index. It copies every byte
// it keeps, and refuses (never panics on) anything that is not exactly one
// well-formed record for that index, with an error naming the index.
func decodeRaftLog(index uint64, rec []byte) (raft.Log, error) {
	fail := func(format string, args ...any) (raft.Log, error) {
		return raft.Log{}, fmt.Errorf("log %d: %s", index, fmt.Sprintf(format, args...))
	}
	if len(rec) < 1+4 {
		return fail("record of %d bytes is too short", len(rec))
	}
	if rec[0] != raftLogVersion {
		return fail("unknown record version %d", rec[0])
	}
	body, sum := rec[:len(rec)-4], binary.BigEndian.Uint32(rec[len(rec)-4:])
	if got := crc32.Checksum(body, crc32c); got != sum {
		return fail("checksum mismatch (stored %08x, computed %08x)", sum, got)
	}
	d := raftLogDecoder{b: body[1:]}
	var l raft.Log
	l.Index = d.uvarint("index")
	l.Term = d.uvarint("term")
	l.Type = raft.LogType(d.byte("type"))
	l.Data = d.bytes("data")
	l.Extensions = d.bytes("extensions")
	switch d.byte("time flag") {
	case 0:
	case 1:
		l.AppendedAt = time.Unix(0, d.varint("appended-at"))
	default:
		if d.err == nil {
			d.err = errors.New("bad time flag")
		}
	}
	if d.err != nil {
		return fail("%v", d.err)
	}
	if len(d.b) != 0 {
		return fail("%d trailing bytes", len(d.b))
	}
	if l.Index != index {
		return fail("record holds index %d", l.Index)
	}
	return l, nil
}

// raftLogDecoder reads fields off a record; the first failure sticks and
// every later read returns a zero value.
type raftLogDecoder struct {
	b   []byte
	err error
}

func (d *raftLogDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("truncated or overlong %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *raftLogDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("truncated or overlong %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *raftLogDecoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("truncated before %s", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// bytes reads a length-prefixed field; empty comes back as nil.
func (d *raftLogDecoder) bytes(what string) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%s of %d bytes overruns the record (%d left)", what, n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := bytes.Clone(d.b[:n])
	d.b = d.b[n:]
	return v
}
