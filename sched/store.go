package sched

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gridnode/gridnode/sdk/api"
	"github.com/gridnode/gridnode/transport"
	bolt "go.etcd.io/bbolt"
)

// ErrStorage wraps every failed write: the node's disk refused it (full,
// read-only, failed fsync). Nothing that failed this way was acknowledged.
var ErrStorage = errors.New("sched: storage")

// ErrNotFound is returned for a job the node does not hold.
var ErrNotFound = errors.New("sched: not found")

// Bolt layout:
//
//	meta/serial            → uint64, the last job serial stamped here
//	jobs/<jobID>           → jobRecord (CBOR)
//	idem/<key>             → jobID
//	job/<jobID>/in/<idx>        → item input
//	job/<jobID>/res/<seq><idx>  → api.Result (CBOR); the index in the key lets
//	                              recovery list the items that have results
//	                              without decoding them
var (
	bMeta = []byte("meta")
	bJobs = []byte("jobs")
	bIdem = []byte("idem")
	bJob  = []byte("job")
	bIn   = []byte("in")
	bRes  = []byte("res")
	kSer  = []byte("serial")
)

// jobRecord is what the store keeps about a job besides its items and results.
type jobRecord struct {
	ID        string            `cbor:"1,keyasint"`
	Spec      api.JobSpec       `cbor:"2,keyasint"`
	Items     uint64            `cbor:"3,keyasint"`
	State     string            `cbor:"4,keyasint"` // receiving, running, done, cancelled
	Created   time.Time         `cbor:"5,keyasint"`
	Finished  time.Time         `cbor:"6,keyasint,omitempty"`
	Results   uint64            `cbor:"7,keyasint"` // the last result seq
	OK        uint64            `cbor:"8,keyasint"`
	ByStatus  map[string]uint64 `cbor:"9,keyasint,omitempty"`
	FilesDir  string            `cbor:"10,keyasint,omitempty"`
	ExpiresAt time.Time         `cbor:"11,keyasint,omitempty"`
	// The ledger (ledger.go): the job's holders, the term of the home
	// that wrote its last results and where that home's log began, and
	// the newest term this copy's holder has promised to follow.
	Holders   []string `cbor:"12,keyasint,omitempty"`
	Term      uint64   `cbor:"13,keyasint,omitempty"`
	PrevTerm  uint64   `cbor:"14,keyasint,omitempty"`
	TermStart uint64   `cbor:"15,keyasint,omitempty"`
	Promise   uint64   `cbor:"16,keyasint,omitempty"`
}

// copyState is what this copy of the job holds, for a new home's gather.
func (r *jobRecord) copyState() copyState {
	return copyState{Has: r.State != stateReceiving, Term: r.Term, Results: r.Results}
}

// termInfo is the term this record's home writes under.
func (r *jobRecord) termInfo() termInfo {
	return termInfo{Term: r.Term, PrevTerm: r.PrevTerm, TermStart: r.TermStart}
}

const stateReceiving = "receiving"

func (r *jobRecord) status() api.JobStatus {
	st := api.JobStatus{
		JobID: r.ID, Name: r.Spec.Name, Module: r.Spec.Module, State: r.State,
		Items: r.Items, Committed: r.OK, Failed: r.Results - r.OK,
		Created: r.Created, Finished: r.Finished, Expires: r.ExpiresAt,
		ByStatus: map[string]uint64{},
	}
	for k, v := range r.ByStatus {
		st.ByStatus[k] = v
	}
	if r.State == api.JobRunning {
		st.Pending = r.Items - r.Results
	}
	return st
}

// Store is the node's durable state: jobs, their item inputs and their
// result logs, in one bbolt file. Every write is fsynced before it returns.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (or creates) the store at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by another process: is a gridnode agent already running on this data dir?", ErrStorage, path)
		}
		return nil, fmt.Errorf("%w: open %s: %v", ErrStorage, path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bJobs, bIdem, bJob} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: init %s: %v", ErrStorage, path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (s *Store) update(what string, fn func(tx *bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, errConflict) {
			return err
		}
		return fmt.Errorf("%w: %s: %v", ErrStorage, what, err)
	}
	return nil
}

var errConflict = errors.New("sched: conflict")

// NextSerial stamps and durably records the next job serial.
func (s *Store) NextSerial() (uint64, error) {
	var n uint64
	err := s.update("next job serial", func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		if v := b.Get(kSer); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		n++
		return b.Put(kSer, u64(n))
	})
	return n, err
}

// LookupIdempotent returns the job accepted earlier under key, if any.
func (s *Store) LookupIdempotent(key string) (string, bool) {
	var id string
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bIdem).Get([]byte(key)); v != nil {
			id = string(v)
		}
		return nil
	})
	return id, id != ""
}

// Begin records a job in the receiving state: invisible to the scheduler
// and to clients until Accept.
func (s *Store) Begin(rec *jobRecord) error {
	return s.update("begin job", func(tx *bolt.Tx) error {
		jb, err := tx.Bucket(bJob).CreateBucket([]byte(rec.ID))
		if err != nil {
			return err
		}
		for _, n := range [][]byte{bIn, bRes} {
			if _, err := jb.CreateBucket(n); err != nil {
				return err
			}
		}
		return putRecord(tx, rec)
	})
}

// AppendInputs stores the next inputs of a receiving job, from index first.
func (s *Store) AppendInputs(jobID string, first uint64, inputs [][]byte) error {
	return s.update("store item inputs", func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		in := jb.Bucket(bIn)
		in.FillPercent = 1 // appends in key order
		for i, v := range inputs {
			if err := in.Put(u64(first+uint64(i)), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Accept makes a received job durable and runnable. If the idempotency key
// was taken meanwhile, the job is dropped and the earlier one's ID returned.
func (s *Store) Accept(rec *jobRecord) (existing string, err error) {
	err = s.update("accept job", func(tx *bolt.Tx) error {
		if k := rec.Spec.IdempotencyKey; k != "" {
			if v := tx.Bucket(bIdem).Get([]byte(k)); v != nil {
				existing = string(v)
				return dropJob(tx, rec.ID)
			}
			if err := tx.Bucket(bIdem).Put([]byte(k), []byte(rec.ID)); err != nil {
				return err
			}
		}
		return putRecord(tx, rec)
	})
	return existing, err
}

// Drop deletes a job with its inputs and results.
func (s *Store) Drop(jobID string) error {
	return s.update("drop job", func(tx *bolt.Tx) error { return dropJob(tx, jobID) })
}

func dropJob(tx *bolt.Tx, jobID string) error {
	if v := tx.Bucket(bJobs).Get([]byte(jobID)); v != nil {
		var rec jobRecord
		if transport.Unmarshal(v, &rec) == nil && rec.Spec.IdempotencyKey != "" {
			ib := tx.Bucket(bIdem)
			if string(ib.Get([]byte(rec.Spec.IdempotencyKey))) == jobID {
				if err := ib.Delete([]byte(rec.Spec.IdempotencyKey)); err != nil {
					return err
				}
			}
		}
	}
	if err := tx.Bucket(bJobs).Delete([]byte(jobID)); err != nil {
		return err
	}
	if tx.Bucket(bJob).Bucket([]byte(jobID)) != nil {
		return tx.Bucket(bJob).DeleteBucket([]byte(jobID))
	}
	return nil
}

func putRecord(tx *bolt.Tx, rec *jobRecord) error {
	b, err := transport.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bJobs).Put([]byte(rec.ID), b)
}

// SetState moves a running job to a final state (cancelled, done) with its
// expiry; a job that is no longer running is left alone (errConflict).
func (s *Store) SetState(jobID, state string, finished, expires time.Time) error {
	return s.update("set job state", func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, jobID)
		if err != nil {
			return err
		}
		if rec.State != api.JobRunning {
			return errConflict
		}
		rec.State, rec.Finished, rec.ExpiresAt = state, finished, expires
		if jb := tx.Bucket(bJob).Bucket([]byte(jobID)); jb != nil {
			if err := dropCheckpoints(jb, nil, true); err != nil {
				return err
			}
		}
		return putRecord(tx, rec)
	})
}

func getRecord(tx *bolt.Tx, jobID string) (*jobRecord, error) {
	v := tx.Bucket(bJobs).Get([]byte(jobID))
	if v == nil {
		return nil, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	var rec jobRecord
	if err := transport.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("job record %s is corrupt: %w", jobID, err)
	}
	return &rec, nil
}

// Job returns a job's record.
func (s *Store) Job(jobID string) (*jobRecord, error) {
	var rec *jobRecord
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		rec, err = getRecord(tx, jobID)
		return err
	})
	return rec, err
}

// Jobs returns every job record, receiving ones included.
func (s *Store) Jobs() ([]*jobRecord, error) {
	var out []*jobRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bJobs).ForEach(func(k, v []byte) error {
			var rec jobRecord
			if err := transport.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("job record %s is corrupt: %w", k, err)
			}
			out = append(out, &rec)
			return nil
		})
	})
	return out, err
}

// Input returns item idx's input.
func (s *Store) Input(jobID string, idx uint64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		v := jb.Bucket(bIn).Get(u64(idx))
		if v == nil {
			return fmt.Errorf("%w: item %d of job %s", ErrNotFound, idx, jobID)
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Inputs returns the inputs of items idxs, in order.
func (s *Store) Inputs(jobID string, idxs []uint64) ([][]byte, error) {
	out := make([][]byte, len(idxs))
	err := s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		in := jb.Bucket(bIn)
		for i, idx := range idxs {
			v := in.Get(u64(idx))
			if v == nil {
				return fmt.Errorf("%w: item %d of job %s", ErrNotFound, idx, jobID)
			}
			out[i] = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// DoneItems calls fn for every item index that has a result.
func (s *Store) DoneItems(jobID string, fn func(idx uint64)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		return jb.Bucket(bRes).ForEach(func(k, _ []byte) error {
			if len(k) == 16 {
				fn(binary.BigEndian.Uint64(k[8:]))
			}
			return nil
		})
	})
}

func resultKey(seq, idx uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(seq), idx)
}

// Commit appends results to their jobs' logs in one durable transaction and
// returns, per job, the updated record. The caller (the scheduler's single
// committer) passes each item at most once: the store does not look for an
// earlier result of the same item. Results for a job that is gone or no
// longer running are skipped (committed stays false).
func (s *Store) Commit(results []pendingResult) (map[string]*jobRecord, error) {
	recs := map[string]*jobRecord{}
	err := s.update("commit results", func(tx *bolt.Tx) error {
		for i := range results {
			r := &results[i]
			r.committed = false
			rec, ok := recs[r.jobID]
			if !ok {
				var err error
				if rec, err = getRecord(tx, r.jobID); err != nil {
					if errors.Is(err, ErrNotFound) {
						continue
					}
					return err
				}
				recs[r.jobID] = rec
			}
			if rec.State != api.JobRunning || rec.Promise > rec.Term {
				// Not running, or this copy promised a newer home its
				// place (ledger.go): nothing more is written here.
				continue
			}
			if n := uint64(len(r.emitted)); n > 0 {
				if rec.Items+n > MaxJobItems {
					r.res.Message = strings.TrimSpace(fmt.Sprintf("%s (its %d emitted children were dropped: the job would pass its limit of %d items)", r.res.Message, n, MaxJobItems))
					r.emitted = nil
				} else {
					in := tx.Bucket(bJob).Bucket([]byte(r.jobID)).Bucket(bIn)
					in.FillPercent = 1
					for i, e := range r.emitted {
						if err := in.Put(u64(rec.Items+uint64(i)), e); err != nil {
							return err
						}
					}
					rec.Items += n
				}
			}
			rec.Results++
			r.res.Seq = rec.Results
			b, err := transport.Marshal(&r.res)
			if err != nil {
				return err
			}
			jb := tx.Bucket(bJob).Bucket([]byte(r.jobID))
			res := jb.Bucket(bRes)
			res.FillPercent = 1 // appends in key order
			if err := res.Put(resultKey(r.res.Seq, r.res.Index), b); err != nil {
				return err
			}
			if err := dropCheckpoints(jb, []api.Result{r.res}, false); err != nil {
				return err
			}
			if r.res.OK() {
				rec.OK++
			}

			if rec.ByStatus == nil {
				rec.ByStatus = map[string]uint64{}
			}
			rec.ByStatus[r.res.Status]++
			r.committed = true
		}
		for _, rec := range recs {
			if err := putRecord(tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	return recs, err
}

// pendingResult is an outcome on its way into a job's result log.
type pendingResult struct {
	jobID     string
	res       api.Result
	emitted   [][]byte // child items that enter the job with this result
	committed bool     // set by Commit
	slot      int
	reply     chan<- commitReply // nil for results that need no answer
}

func (r pendingResult) answer(status uint8) {
	if r.reply != nil {
		r.reply <- commitReply{slot: r.slot, status: status}
	}
}

// MaxJobItems caps a job's items, emitted children included, so that a
// module that emits without end cannot fill the disk.
const MaxJobItems = 1 << 24

// Results returns up to limit results of a job with Seq > after, in order;
// without withOutput, outputs and logs are left out.
func (s *Store) Results(jobID string, after uint64, limit int, withOutput bool) ([]api.Result, error) {
	var out []api.Result
	err := s.db.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bJob).Bucket([]byte(jobID))
		if jb == nil {
			return fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		c := jb.Bucket(bRes).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var r api.Result
			if err := transport.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("result %d of job %s is corrupt: %w", binary.BigEndian.Uint64(k), jobID, err)
			}
			if !withOutput {
				r.Output, r.Log = nil, nil
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
