package sched

import (
	"time"

	"github.com/gridnode/gridnode/grid"
	"github.com/gridnode/gridnode/sdk/api"
)

// Methods nodes call on each other to run a job's items. Only nodes may
// call them: every handler checks the caller's certificate.
const (
	methodAssign = "sched.assign"      // home → coordinator: items to coordinate
	methodExec   = "sched.exec"        // coordinator → executor: executions to queue
	methodReport = "sched.report"      // executor → coordinator: finished executions' digests
	methodTake   = "sched.take"        // coordinator → executor: canonical outcomes, released
	methodDrop   = "sched.drop"        // coordinator → executor: roll executions back
	methodCommit = "sched.commit"      // coordinator → home: decided items, into the result log
	methodItems  = "sched.items"       // home → coordinator: why items are not done; cancel a job
	methodJob    = "sched.job"         // any node → home: a job's header and files
	methodModule = "sched.module"      // any node → any node: a module's bytes by hash (stream)
	methodCkpt   = "sched.checkpoint"  // executor → home: checkpoints of running executions
	methodResume = "sched.resume"      // executor → home: the checkpoint an execution resumes from
	methodPut    = "sched.hold.put"    // home → holder: a job, whole, a part at a time
	methodAppend = "sched.hold.append" // home → holder: results and the record after them
	methodGather = "sched.hold.gather" // new home → holder: promise my term; what do you hold?
	methodFetch  = "sched.hold.fetch"  // new home → holder: the results and inputs I lack
	methodWhere  = "sched.hold.where"  // any node → any node: who holds this job?
	methodHeld   = "sched.hold.ckpt"   // home → holder: checkpoints, handed on
)

// jobHeader is what coordinators and executors need of a job: everything
// but its items and files.
type jobHeader struct {
	ID    string      `cbor:"1,keyasint"`
	Home  string      `cbor:"2,keyasint"` // the home that sent it
	Spec  api.JobSpec `cbor:"3,keyasint"` // without Files
	Files bool        `cbor:"4,keyasint,omitempty"`
	// Holders keep the job's ledger; the first alive is its home, where
	// results are committed (actingHome).
	Holders []string `cbor:"5,keyasint,omitempty"`
}

// home is where the job's results go under v: its first live holder (the
// home that sent the header, for a job whose header names none).
func (h *jobHeader) home(v grid.View) string {
	if len(h.Holders) == 0 {
		return h.Home
	}
	return actingHome(v, h.Holders)
}

type assignReq struct {
	Jobs  []jobHeader  `cbor:"1,keyasint"`
	Items []assignItem `cbor:"2,keyasint"`
}

type assignItem struct {
	Job   string `cbor:"1,keyasint"`
	Index uint64 `cbor:"2,keyasint"`
	Input []byte `cbor:"3,keyasint"`
	// Resume: the home holds a checkpoint of the item (an earlier
	// coordinator lost an execution of it): executions start from it.
	Resume bool `cbor:"4,keyasint,omitempty"`
}

type assignResp struct{}

type execReq struct {
	Coord    string      `cbor:"1,keyasint"` // the coordinator and its incarnation: when it is gone, its executions are dropped
	CoordInc uint64      `cbor:"2,keyasint"`
	Jobs     []jobHeader `cbor:"3,keyasint"`
	Execs    []execItem  `cbor:"4,keyasint"`
}

type execItem struct {
	ID    string `cbor:"1,keyasint"`
	Job   string `cbor:"2,keyasint"`
	Index uint64 `cbor:"3,keyasint"`
	Input []byte `cbor:"4,keyasint"`
	// Resume: an execution of the item was lost; before it starts, the
	// executor asks the job's home for the item's checkpoint.
	Resume bool `cbor:"5,keyasint,omitempty"`
}

// ckptReq carries the newest checkpoints of running executions to their
// job's home, which keeps the newest of each item until the item is
// decided: a lost execution's successor resumes from it.
type ckptReq struct {
	Items []ckptItem `cbor:"1,keyasint"`
}

type ckptItem struct {
	Job    string `cbor:"1,keyasint"`
	Index  uint64 `cbor:"2,keyasint"`
	Sealed []byte `cbor:"3,keyasint"`
}

type ckptResp struct{}

type resumeReq struct {
	Job   string `cbor:"1,keyasint"`
	Index uint64 `cbor:"2,keyasint"`
}

// resumeResp is the item's newest checkpoint, sealed; empty: none.
type resumeResp struct {
	Sealed []byte `cbor:"1,keyasint,omitempty"`
}

// execResp says how many executions, from the first, the executor queued;
// the rest found its queue full.
type execResp struct {
	Accepted int `cbor:"1,keyasint"`
	Free     int `cbor:"2,keyasint"`
}

type reportReq struct {
	From  string       `cbor:"1,keyasint"`
	Inc   uint64       `cbor:"2,keyasint"`
	Free  int          `cbor:"3,keyasint"` // queue room after these
	Execs []execReport `cbor:"4,keyasint"`
}

// execReport is a finished execution as its coordinator needs it for the
// vote; the outcome itself stays staged on the executor.
type execReport struct {
	ID      string `cbor:"1,keyasint"`
	Status  string `cbor:"2,keyasint"`
	Digest  string `cbor:"3,keyasint"`
	Message string `cbor:"4,keyasint,omitempty"`
	Lost    bool   `cbor:"5,keyasint,omitempty"` // no usable outcome (crashed, cancelled, module missing): it does not vote
	// Refused: the execution never ran, the executor's queue was full
	// when it came in a report's reply. It used no attempt.
	Refused bool `cbor:"6,keyasint,omitempty"`
	// Outcome is the staged outcome itself when it is small (see
	// inlineOutcome): a coordinator that decides on it needs no take. The
	// executor keeps it staged all the same until the vote releases it.
	Outcome *stagedOutcome `cbor:"7,keyasint,omitempty"`
}

// reportResp is the coordinator's answer to a report, so that one round
// trip carries what would otherwise take three: the executions it no
// longer wants (decided, released, or unknown after a restart), to roll
// back or forget; and new executions for the reporting executor, up to
// the queue room the report announced.
type reportResp struct {
	Drop     []string    `cbor:"1,keyasint,omitempty"`
	CoordInc uint64      `cbor:"2,keyasint,omitempty"` // the coordinator's incarnation, for Execs
	Jobs     []jobHeader `cbor:"3,keyasint,omitempty"`
	Execs    []execItem  `cbor:"4,keyasint,omitempty"`
}

type takeReq struct {
	IDs []string `cbor:"1,keyasint"`
}

// takeResp holds the outcomes asked for, in order, as many as fit one
// frame; the caller asks again for the rest.
type takeResp struct {
	Outcomes []stagedOutcome `cbor:"1,keyasint"`
}

type stagedOutcome struct {
	ID       string        `cbor:"1,keyasint"`
	Missing  bool          `cbor:"2,keyasint,omitempty"` // not staged here (dropped, or the node restarted)
	Status   string        `cbor:"3,keyasint,omitempty"`
	ExitCode uint32        `cbor:"4,keyasint,omitempty"`
	Stdout   []byte        `cbor:"5,keyasint,omitempty"`
	Stderr   []byte        `cbor:"6,keyasint,omitempty"`
	Message  string        `cbor:"7,keyasint,omitempty"`
	Digest   string        `cbor:"8,keyasint,omitempty"`
	Duration time.Duration `cbor:"9,keyasint,omitempty"`
	Emitted  [][]byte      `cbor:"10,keyasint,omitempty"`
	Resumed  bool          `cbor:"11,keyasint,omitempty"`
}

type dropReq struct {
	IDs []string `cbor:"1,keyasint"`
}

type dropResp struct{}

type commitReq struct {
	From  string       `cbor:"1,keyasint"`
	Items []commitItem `cbor:"2,keyasint"`
}

type commitItem struct {
	Job     string     `cbor:"1,keyasint"`
	Result  api.Result `cbor:"2,keyasint"`
	Emitted [][]byte   `cbor:"3,keyasint,omitempty"` // child items that enter the job with this result
}

// Commit outcomes, one per item.
const (
	commitDone      uint8 = iota + 1 // now in the result log
	commitDuplicate                  // the item already had a result: drop this one
	commitGone                       // the job is gone or no longer running
	commitMoved                      // this node is not the job's home (any more, or yet): send it to the home again
)

type commitResp struct {
	Status []uint8 `cbor:"1,keyasint"`
}

type itemsReq struct {
	Job     string `cbor:"1,keyasint"`
	Cancel  bool   `cbor:"2,keyasint,omitempty"`
	Example int    `cbor:"3,keyasint,omitempty"` // how many unfinished items to describe
}

type itemsResp struct {
	Running     uint64            `cbor:"1,keyasint"`
	Waiting     map[string]uint64 `cbor:"2,keyasint,omitempty"`
	Examples    []api.ItemState   `cbor:"3,keyasint,omitempty"`
	Quarantined []api.Quarantine  `cbor:"4,keyasint,omitempty"`
}

type jobReq struct {
	ID string `cbor:"1,keyasint"`
}

type jobResp struct {
	Job   jobHeader         `cbor:"1,keyasint"`
	Files map[string][]byte `cbor:"2,keyasint,omitempty"`
}

type moduleReq struct {
	Hash string `cbor:"1,keyasint"`
}

// putReq is part of a job as its home sends it to a holder: its record
// (without results) and inputs from First; Complete on the last part.
type putReq struct {
	Rec      jobRecord         `cbor:"1,keyasint"`
	First    uint64            `cbor:"2,keyasint"`
	Inputs   [][]byte          `cbor:"3,keyasint,omitempty"`
	Complete bool              `cbor:"4,keyasint,omitempty"`
	Files    map[string][]byte `cbor:"5,keyasint,omitempty"` // the job's files, with the first part
	// Abort: the job was not accepted (too few holders stored it); drop
	// what was sent of it.
	Abort bool `cbor:"6,keyasint,omitempty"`
}

type putResp struct {
	Stale bool `cbor:"1,keyasint,omitempty"`
}

// appendReq is a write of the home's: results from FirstSeq, inputs
// emitted with them from InFirst, and the record after them (its term
// fields say which home wrote it).
type appendReq struct {
	Rec      jobRecord    `cbor:"1,keyasint"`
	FirstSeq uint64       `cbor:"2,keyasint"`
	Results  []api.Result `cbor:"3,keyasint,omitempty"`
	InFirst  uint64       `cbor:"4,keyasint"`
	Inputs   [][]byte     `cbor:"5,keyasint,omitempty"`
}

// appendResp says what the holder holds after the write: Results and
// Items; Missing, that it lacks the job (send it whole first); Stale, that
// it follows a newer home.
type appendResp struct {
	Results uint64 `cbor:"1,keyasint"`
	Items   uint64 `cbor:"2,keyasint"`
	Missing bool   `cbor:"3,keyasint,omitempty"`
	Stale   bool   `cbor:"4,keyasint,omitempty"`
}

type gatherReq struct {
	Job  string `cbor:"1,keyasint"`
	Term uint64 `cbor:"2,keyasint"`
}

// gatherResp is what a holder holds of the job, once it promised the term.
type gatherResp struct {
	Copy copyState  `cbor:"1,keyasint"`
	Rec  *jobRecord `cbor:"2,keyasint,omitempty"`
}

// fetchReq asks a holder for its results after AfterSeq and its inputs
// from InFrom, a frame's worth.
type fetchReq struct {
	Job      string `cbor:"1,keyasint"`
	AfterSeq uint64 `cbor:"2,keyasint"`
	InFrom   uint64 `cbor:"3,keyasint"`
}

type fetchResp struct {
	Rec     jobRecord         `cbor:"1,keyasint"`
	Results []api.Result      `cbor:"2,keyasint,omitempty"`
	Inputs  [][]byte          `cbor:"3,keyasint,omitempty"`
	Files   map[string][]byte `cbor:"4,keyasint,omitempty"` // with the first fetch of inputs
}

// whereReq names a job, or the idempotency key it was submitted with.
type whereReq struct {
	Job string `cbor:"1,keyasint,omitempty"`
	Key string `cbor:"2,keyasint,omitempty"`
}

// whereResp names a job and its holders; empty: this node holds no copy.
type whereResp struct {
	Holders []string `cbor:"1,keyasint,omitempty"`
	Job     string   `cbor:"2,keyasint,omitempty"`
}
