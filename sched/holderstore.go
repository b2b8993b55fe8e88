package sched

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
	bolt "go.etcd.io/bbolt"
)

// What a holder's store does with the home's writes (ledger.go). Each is
// one fsynced transaction.

// jobBucket returns a job's bucket, creating it (with its inputs and
// results) when create is set.
func jobBucket(tx *bolt.Tx, jobID string, create bool) (*bolt.Bucket, error) {
	jb := tx.Bucket(bJob).Bucket([]byte(jobID))
	if jb != nil || !create {
		return jb, nil
	}
	jb, err := tx.Bucket(bJob).CreateBucket([]byte(jobID))
	if err != nil {
		return nil, err
	}
	for _, n := range [][]byte{bIn, bRes} {
		if _, err := jb.CreateBucket(n); err != nil {
			return nil, err
		}
	}
	return jb, nil
}

// clearResults empties a copy's result log, to be written again whole.
func clearResults(jb *bolt.Bucket) error {
	if err := jb.DeleteBucket(bRes); err != nil {
		return err
	}
	_, err := jb.CreateBucket(bRes)
	return err
}

// putResults appends the results after the copy's last seq to its log,
// counting them in rec.
func putResults(jb *bolt.Bucket, rec *jobRecord, results []api.Result) error {
	res := jb.Bucket(bRes)
	res.FillPercent = 1 // appends in key order
	for i := range results {
		r := &results[i]
		if r.Seq <= rec.Results {
			continue
		}
		b, err := transport.Marshal(r)
		if err != nil {
			return err
		}
		if err := res.Put(resultKey(r.Seq, r.Index), b); err != nil {
			return err
		}
		rec.Results = r.Seq
		if r.OK() {
			rec.OK++
		}
		if rec.ByStatus == nil {
			rec.ByStatus = map[string]uint64{}
		}
		rec.ByStatus[r.Status]++
	}
	return nil
}

func putInputs(jb *bolt.Bucket, first uint64, inputs [][]byte) error {
	in := jb.Bucket(bIn)
	in.FillPercent = 1
	for i, v := range inputs {
		if err := in.Put(u64(first+uint64(i)), v); err != nil {
			return err
		}
	}
	return nil
}

// HolderPut stores part of a job the home sends whole: its inputs from
// index first and, once complete, its record. A copy holds no results
// after a put; they follow as appends from seq 1. A put of a term older
// than this holder's promise is refused (stale).
func (s *Store) HolderPut(rec *jobRecord, first uint64, inputs [][]byte, complete bool, filesDir string) (stale bool, err error) {
	err = s.update("store a held job", func(tx *bolt.Tx) error {
		old, err := getRecord(tx, rec.ID)
		if err != nil && !isNotFound(err) {
			return err
		}
		promise := rec.Term
		if old != nil {
			if old.Promise > rec.Term {
				stale = true
				return nil
			}
			promise = max(promise, old.Promise)
		}
		jb, err := jobBucket(tx, rec.ID, true)
		if err != nil {
			return err
		}
		if first == 0 && (old == nil || old.State != stateReceiving || old.Results > 0) {
			// A new copy: whatever was here is replaced.
			if err := clearResults(jb); err != nil {
				return err
			}
		}
		if err := putInputs(jb, first, inputs); err != nil {
			return err
		}
		local := *rec
		local.Results, local.OK, local.ByStatus = 0, 0, nil
		local.Promise, local.FilesDir = promise, filesDir
		if !complete {
			local.State = stateReceiving
		} else if err := putIdempotent(tx, &local); err != nil {
			return err
		}
		return putRecord(tx, &local)
	})
	return stale, err
}

// HolderAppend applies the home's write of results, emitted inputs and the
// record after them, as judgeAppend says.
func (s *Store) HolderAppend(a *appendReq) (ack appendResp, err error) {
	err = s.update("store held results", func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, a.Rec.ID)
		if isNotFound(err) {
			ack.Missing = true
			return nil
		}
		if err != nil {
			return err
		}
		if rec.State == stateReceiving {
			ack.Missing = true
			return nil
		}
		jb := tx.Bucket(bJob).Bucket([]byte(rec.ID))
		switch judgeAppend(rec.copyState(), rec.Promise, a.Rec.termInfo()) {
		case verdictStale:
			ack.Stale = true
			return nil
		case verdictReset:
			if err := clearResults(jb); err != nil {
				return err
			}
			rec.Results, rec.OK, rec.ByStatus = 0, 0, nil
		}
		rec.Term, rec.PrevTerm, rec.TermStart = a.Rec.Term, a.Rec.PrevTerm, a.Rec.TermStart
		rec.Promise = max(rec.Promise, a.Rec.Term)
		defer func() { ack.Results, ack.Items = rec.Results, rec.Items }()
		if a.FirstSeq > rec.Results+1 || a.InFirst > rec.Items {
			return putRecord(tx, rec) // behind: the home sends what it lacks first
		}
		if err := putResults(jb, rec, a.Results); err != nil {
			return err
		}
		if err := putInputs(jb, a.InFirst, a.Inputs); err != nil {
			return err
		}
		rec.Items = max(rec.Items, a.InFirst+uint64(len(a.Inputs)))
		if a.FirstSeq+uint64(len(a.Results)) > rec.Results {
			// Not a write older than what is here: its state is the newer.
			rec.State, rec.Finished, rec.ExpiresAt = a.Rec.State, a.Rec.Finished, a.Rec.ExpiresAt
		}
		if err := dropCheckpoints(jb, a.Results, rec.State != api.JobRunning); err != nil {
			return err
		}
		if len(a.Rec.Holders) > len(rec.Holders) {
			rec.Holders = a.Rec.Holders // the list only grows
		}
		return putRecord(tx, rec)
	})
	return ack, err
}

// Promise records that this holder follows term from now on (refusing
// older writers) and says what it holds of the job; nil when it holds
// nothing of it.
func (s *Store) Promise(jobID string, term uint64) (*jobRecord, error) {
	var out *jobRecord
	err := s.update("promise a term", func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, jobID)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if term > rec.Promise {
			rec.Promise = term
			if err := putRecord(tx, rec); err != nil {
				return err
			}
		}
		out = rec
		return nil
	})
	return out, err
}

// TakeOver makes this copy the home's: term is the epoch that made this
// node home, and the log it continues is the one it holds now.
func (s *Store) TakeOver(jobID string, term uint64) (*jobRecord, error) {
	var out *jobRecord
	err := s.update("take over a job", func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, jobID)
		if err != nil {
			return err
		}
		if rec.Promise > term {
			return fmt.Errorf("%w: job %s: promised term %d, newer than %d", errConflict, jobID, rec.Promise, term)
		}
		if rec.Term != term {
			rec.PrevTerm, rec.TermStart, rec.Term = rec.Term, rec.Results+1, term
		}
		rec.Promise = term
		out = rec
		return putRecord(tx, rec)
	})
	return out, err
}

// CopyIn writes into this node's copy of a job what a better copy (rec's
// holder) sent: its results after seq (when seq is 0, replacing all of
// this copy's), its inputs from inFirst, and its record. Until every input
// is here the copy stays in the receiving state, never to be taken for a
// complete one.
func (s *Store) CopyIn(rec *jobRecord, seq uint64, results []api.Result, inFirst uint64, inputs [][]byte, filesDir string) error {
	return s.update("copy a job in", func(tx *bolt.Tx) error {
		old, err := getRecord(tx, rec.ID)
		if err != nil && !isNotFound(err) {
			return err
		}
		jb, err := jobBucket(tx, rec.ID, true)
		if err != nil {
			return err
		}
		local := *rec
		local.FilesDir = filesDir
		local.Results, local.OK, local.ByStatus, local.Items = 0, 0, map[string]uint64{}, 0
		if old != nil {
			local.Promise = max(local.Promise, old.Promise)
			local.Items = old.Items
			if seq > 0 {
				local.Results, local.OK, local.ByStatus = old.Results, old.OK, old.ByStatus
				if local.ByStatus == nil {
					local.ByStatus = map[string]uint64{}
				}
			}
		}
		if seq == 0 {
			if err := clearResults(jb); err != nil {
				return err
			}
		}
		if err := putResults(jb, &local, results); err != nil {
			return err
		}
		if err := putInputs(jb, inFirst, inputs); err != nil {
			return err
		}
		local.Items = max(local.Items, inFirst+uint64(len(inputs)))
		if local.Items < rec.Items {
			local.State = stateReceiving
		} else if err := putIdempotent(tx, &local); err != nil {
			return err
		}
		return putRecord(tx, &local)
	})
}

// putIdempotent records a held job under its idempotency key, so that a
// submit retried through this node finds it.
func putIdempotent(tx *bolt.Tx, rec *jobRecord) error {
	k := rec.Spec.IdempotencyKey
	if k == "" || tx.Bucket(bIdem).Get([]byte(k)) != nil {
		return nil
	}
	return tx.Bucket(bIdem).Put([]byte(k), []byte(rec.ID))
}

// AddHolder appends a holder to a job's list, which only grows; the new
// record is returned.
func (s *Store) AddHolder(jobID, holder string) (*jobRecord, error) {
	var out *jobRecord
	err := s.update("add a holder", func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, jobID)
		if err != nil {
			return err
		}
		if len(rec.Holders) == 0 {
			rec.Holders = []string{homeOf(jobID)}
		}
		if !slices.Contains(rec.Holders, holder) {
			rec.Holders = append(slices.Clip(rec.Holders), holder)
		}
		out = rec
		return putRecord(tx, rec)
	})
	return out, err
}

// bCkpt, in a job's bucket, holds the newest checkpoint of each of its
// unfinished items: ckpt/<idx> → sealed checkpoint.
var bCkpt = []byte("ckpt")

// PutCheckpoints keeps the newest checkpoint of each item, of jobs this
// store holds, in one durable transaction.
func (s *Store) PutCheckpoints(items []ckptItem) error {
	return s.update("store checkpoints", func(tx *bolt.Tx) error {
		for _, c := range items {
			jb := tx.Bucket(bJob).Bucket([]byte(c.Job))
			if jb == nil || len(c.Sealed) == 0 {
				continue
			}
			cb, err := jb.CreateBucketIfNotExists(bCkpt)
			if err != nil {
				return err
			}
			if err := cb.Put(u64(c.Index), c.Sealed); err != nil {
				return err
			}
		}
		return nil
	})
}

// Checkpoint returns an item's newest checkpoint; nil when there is none.
func (s *Store) Checkpoint(jobID string, idx uint64) []byte {
	var out []byte
	s.db.View(func(tx *bolt.Tx) error {
		if jb := tx.Bucket(bJob).Bucket([]byte(jobID)); jb != nil {
			if cb := jb.Bucket(bCkpt); cb != nil {
				out = bytes.Clone(cb.Get(u64(idx)))
			}
		}
		return nil
	})
	return out
}

// dropCheckpoints forgets the checkpoints of decided items, or, with
// none named, of every item (the job ended).
func dropCheckpoints(jb *bolt.Bucket, results []api.Result, all bool) error {
	cb := jb.Bucket(bCkpt)
	if cb == nil {
		return nil
	}
	if all {
		return jb.DeleteBucket(bCkpt)
	}
	for _, r := range results {
		if err := cb.Delete(u64(r.Index)); err != nil {
			return err
		}
	}
	return nil
}

// InputsFrom returns a job's inputs from index first, up to about maxBytes
// (at least one).
func (s *Store) InputsFrom(jobID string, first uint64, maxBytes int) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		c := jb.Bucket(bIn).Cursor()
		size := 0
		next := first
		for k, v := c.Seek(u64(first)); k != nil && (len(out) == 0 || size+len(v) <= maxBytes); k, v = c.Next() {
			if decodeU64(k) != next {
				return fmt.Errorf("job %s: input %d is missing from this copy", jobID, next)
			}
			out = append(out, append([]byte(nil), v...))
			size += len(v) + 16
			next++
		}
		return nil
	})
	return out, err
}

func decodeU64(b []byte) uint64 {
	if len(b) != 8 {
		return ^uint64(0)
	}
	return binary.BigEndian.Uint64(b)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
