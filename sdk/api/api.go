package api

import "time"

// Method names. One stream per call; see transport's rpc.go for the framing.
const (
	MethodModulePush = "module.push"     // stream: ModuleChunk… → ModulePushReply
	MethodJobSubmit  = "job.submit"      // stream: SubmitHeader, ItemBatch…, SubmitEnd → SubmitReply
	MethodJobStatus  = "job.status"      // unary: JobRef → JobStatus
	MethodJobResults = "job.results"     // stream: ResultsRequest → ResultBatch… (server ends the stream)
	MethodJobCancel  = "job.cancel"      // unary: JobRef → JobStatus
	MethodJobList    = "job.list"        // unary: JobListRequest → JobList
	MethodNodeInfo   = "node.info"       // unary: NodeInfoRequest → NodeInfo
	MethodMembers    = "cluster.members" // unary: MembersRequest → Members
	MethodLeave      = "node.leave"      // unary: LeaveRequest → LeaveReply
)

// Error codes beyond transport's generic ones (bad_request, not_found, too_large,
// unavailable, internal, …). They are stable: scripts and the CLI's exit codes
// depend on them.
const (
	CodeInvalidModule = "invalid_module" // the module does not validate or compile
	CodeMissingImport = "missing_import" // the module imports functions the grid does not provide
	CodeModuleMissing = "module_missing" // a job names a module the node does not have: push it first
	CodeLimit         = "limit"          // a job asks for more than the node allows
	CodeNoQuorum      = "no_quorum"      // the node cannot renew its view: it accepts no jobs
	CodeStorage       = "storage"        // the node's disk refused a write (full, read-only, failed fsync)
)

// MaxItemInput caps one item's input; MaxItemBatch caps the items in one
// submit frame. Both keep one frame well under transport's frame cap.
const (
	MaxItemInput = 4 << 20
	MaxItemBatch = 1024
)

// ModuleChunk is one piece of a module upload, in order; the client
// half-closes after the last. Uploads are idempotent: a module is named by
// its hash.
type ModuleChunk struct {
	Data []byte `cbor:"1,keyasint"`
}

// ModuleChunkSize is the largest chunk a client sends; MaxModuleSize the
// largest module a node takes.
const (
	ModuleChunkSize = 1 << 20
	MaxModuleSize   = 128 << 20
)

// ModulePushReply names the stored module.
type ModulePushReply struct {
	Hash    string `cbor:"1,keyasint"` // "sha256:<hex>"
	Existed bool   `cbor:"2,keyasint"`
}

// Limits bound one execution. Zero fields take the node's defaults; values
// over the node's maximums are refused at submit with CodeLimit.
type Limits struct {
	MemoryBytes uint64        `cbor:"1,keyasint,omitempty"`
	Deadline    time.Duration `cbor:"2,keyasint,omitempty"`
	StdoutBytes int           `cbor:"3,keyasint,omitempty"`
	StderrBytes int           `cbor:"4,keyasint,omitempty"`
}

// Policy is how the grid runs a job's items. Every zero field means its
// default; invalid combinations are refused at submit (code bad_request).
// The knobs follow BOINC's: target results, minimum quorum, maximum total
// and error results, and a per-execution deadline.
type Policy struct {
	Limits Limits `cbor:"1,keyasint,omitempty"`
	// Attempts bounds the executions ever started for one item, the lost
	// ones (a crashed worker, a dead node) included. 0 means Replicas+2.
	Attempts int `cbor:"2,keyasint,omitempty"`
	// Nondeterministic gives executions the real clocks and real randomness.
	// By default they get a virtual clock and randomness seeded by the item
	// ID, so that two honest runs of an item produce the same bytes.
	Nondeterministic bool `cbor:"3,keyasint,omitempty"`
	// ResultTTL is how long results stay readable after the job ends.
	// 0 means the default (72h).
	ResultTTL time.Duration `cbor:"4,keyasint,omitempty"`
	// Replicas is how many executions of each item start at once, on
	// distinct hosts (1-16; 0 means 1).
	Replicas int `cbor:"5,keyasint,omitempty"`
	// Quorum is how many executions must produce the same outcome digest
	// for it to be committed (1..Replicas; 0 means Replicas).
	Quorum int `cbor:"6,keyasint,omitempty"`
	// MaxErrors is how many lost executions an item tolerates; one more
	// fails it (0 means 3).
	MaxErrors int `cbor:"7,keyasint,omitempty"`
	// ItemDeadline is how long an execution may take from dispatch to its
	// report before the item runs elsewhere. 0 means the execution deadline
	// plus 30 s. It stretches while the cluster is in a crisis.
	ItemDeadline time.Duration `cbor:"8,keyasint,omitempty"`
	// Adaptive starts one execution per item and accepts it alone when its
	// node's results agreed with the canonical ones 10 times in a row and
	// a draw with probability 1-1/count says so; otherwise the other
	// replicas check it (BOINC's adaptive replication).
	Adaptive bool `cbor:"9,keyasint,omitempty"`
}

// JobSpec describes a job without its items.
type JobSpec struct {
	Name   string            `cbor:"1,keyasint,omitempty"` // argv[0] for the module; for people
	Module string            `cbor:"2,keyasint"`           // "sha256:<hex>", pushed beforehand
	Args   []string          `cbor:"3,keyasint,omitempty"`
	Env    map[string]string `cbor:"4,keyasint,omitempty"`
	// Files is a read-only tree mounted at /job for every item: path → bytes.
	Files  map[string][]byte `cbor:"5,keyasint,omitempty"`
	Policy Policy            `cbor:"6,keyasint,omitempty"`
	// IdempotencyKey makes a retried submit return the original job.
	IdempotencyKey string `cbor:"7,keyasint,omitempty"`
}

// SubmitHeader opens a submit stream.
type SubmitHeader struct {
	Spec JobSpec `cbor:"1,keyasint"`
}

// ItemBatch carries the next items of a submit stream, in order.
type ItemBatch struct {
	Inputs [][]byte `cbor:"1,keyasint"`
}

// SubmitFrame is one client frame after the header: a batch, or the end.
type SubmitFrame struct {
	Batch *ItemBatch `cbor:"1,keyasint,omitempty"`
	End   *SubmitEnd `cbor:"2,keyasint,omitempty"`
}

// SubmitEnd closes a submit stream; Count must equal the items sent, so a
// truncated stream can never be taken for a whole job.
type SubmitEnd struct {
	Count uint64 `cbor:"1,keyasint"`
}

// SubmitReply acknowledges an accepted job: it is durable on the node.
type SubmitReply struct {
	JobID   string `cbor:"1,keyasint"`
	Items   uint64 `cbor:"2,keyasint"`
	Existed bool   `cbor:"3,keyasint,omitempty"` // the idempotency key matched an earlier job
}

// JobRef names a job.
type JobRef struct {
	JobID string `cbor:"1,keyasint"`
}

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"      // every item has a result (some may be errors)
	JobCancelled = "cancelled" // cancelled before every item had a result
)

// JobStatus is a job's progress.
type JobStatus struct {
	JobID     string    `cbor:"1,keyasint"`
	Name      string    `cbor:"2,keyasint,omitempty"`
	Module    string    `cbor:"3,keyasint"`
	State     string    `cbor:"4,keyasint"`
	Items     uint64    `cbor:"5,keyasint"`
	Pending   uint64    `cbor:"6,keyasint"`
	Running   uint64    `cbor:"7,keyasint"`
	Committed uint64    `cbor:"8,keyasint"` // results whose status is ok
	Failed    uint64    `cbor:"9,keyasint"` // results whose status is not ok
	Created   time.Time `cbor:"10,keyasint"`
	Finished  time.Time `cbor:"11,keyasint,omitempty"`
	// ByStatus counts results per outcome status ("ok", "exit", "trap", …).
	ByStatus map[string]uint64 `cbor:"12,keyasint,omitempty"`
	Expires  time.Time         `cbor:"13,keyasint,omitempty"` // when results are collected
	// Waiting counts the items that are not done by why: see the Wait*
	// constants.
	Waiting map[string]uint64 `cbor:"14,keyasint,omitempty"`
	// Unfinished describes a few of the items that are not done.
	Unfinished []ItemState `cbor:"15,keyasint,omitempty"`
	// Quarantined lists nodes whose results for this job's module kept
	// disagreeing with the canonical ones: they get none of its items.
	Quarantined []Quarantine `cbor:"16,keyasint,omitempty"`
}

// Why an item is not done yet.
const (
	WaitAssign   = "waiting for its coordinator" // the view is changing, or its coordinator is unreachable
	WaitSlot     = "waiting for a slot"          // queued on its executors
	WaitRunning  = "running"
	WaitNoNode   = "no node can take it" // fewer free hosts than executions needed
	WaitDisagree = "executions disagree" // more executions run to break the tie
	WaitCommit   = "committing"
)

// ItemState is where one unfinished item stands.
type ItemState struct {
	Index       uint64 `cbor:"1,keyasint"`
	Why         string `cbor:"2,keyasint"`
	Coordinator string `cbor:"3,keyasint,omitempty"`
	Executions  int    `cbor:"4,keyasint,omitempty"`
	Votes       []Vote `cbor:"5,keyasint,omitempty"`
	// Executors are the nodes that hold an unfinished execution of it
	// (queued or running); Resumed says how many of those started from a
	// lost execution's checkpoint.
	Executors []string `cbor:"6,keyasint,omitempty"`
	Resumed   int      `cbor:"7,keyasint,omitempty"`
}

// Quarantine is a node barred from a module's items for a while.
type Quarantine struct {
	Node   string    `cbor:"1,keyasint"`
	Module string    `cbor:"2,keyasint"`
	Until  time.Time `cbor:"3,keyasint"`
}

// Done reports whether the job will change no more.
func (s JobStatus) Done() bool { return s.State == JobDone || s.State == JobCancelled }

// ResultsRequest reads a job's result log after Cursor (0 = from the start).
// With Follow the stream stays open and delivers results as they commit,
// until the job is done or the client goes away.
type ResultsRequest struct {
	JobID  string `cbor:"1,keyasint"`
	Cursor uint64 `cbor:"2,keyasint,omitempty"`
	Follow bool   `cbor:"3,keyasint,omitempty"`
	// NoOutput leaves Output and Log out, for clients that only count.
	NoOutput bool `cbor:"4,keyasint,omitempty"`
}

// Result is one committed item outcome, in commit order.
type Result struct {
	Seq      uint64        `cbor:"1,keyasint"` // position in the result log; the cursor after reading it
	Index    uint64        `cbor:"2,keyasint"` // the item's index in the job
	ItemID   string        `cbor:"3,keyasint"`
	Status   string        `cbor:"4,keyasint"` // plugins' outcome status: ok, exit, trap, deadline, …
	ExitCode uint32        `cbor:"5,keyasint,omitempty"`
	Output   []byte        `cbor:"6,keyasint,omitempty"`
	Log      []byte        `cbor:"7,keyasint,omitempty"` // stderr tail
	Message  string        `cbor:"8,keyasint,omitempty"` // what happened, for a person
	Digest   string        `cbor:"9,keyasint"`
	Node     string        `cbor:"10,keyasint,omitempty"` // the executor
	Duration time.Duration `cbor:"11,keyasint,omitempty"`
	Attempts int           `cbor:"12,keyasint,omitempty"` // executions started for the item
	// Votes are the outcome digests the executions gave, with the nodes
	// that gave each; the committed one first.
	Votes []Vote `cbor:"13,keyasint,omitempty"`
	// Resumed: the canonical execution started from a checkpoint a lost
	// execution of the item saved.
	Resumed bool `cbor:"14,keyasint,omitempty"`
}

// Vote is one outcome digest and the nodes whose executions produced it.
type Vote struct {
	Digest string   `cbor:"1,keyasint"`
	Nodes  []string `cbor:"2,keyasint"`
}

// Result statuses the grid gives an item it could not decide, beside the
// sandbox's own (ok, exit, trap, deadline, …).
const (
	StatusNoConsensus   = "no_consensus"       // the executions disagreed and attempts ran out; Votes shows them
	StatusTooManyErrors = "too_many_errors"    // more executions were lost than MaxErrors
	StatusAttempts      = "attempts_exhausted" // attempts ran out before enough outcomes arrived
)

// OK reports whether the item ran to a zero exit.
func (r Result) OK() bool { return r.Status == "ok" }

// ResultBatch is one frame of a results stream. Cursor is the Seq of the
// last result in it (or the request's cursor when empty); Status is sent
// with the last batch of a stream that ended because the job is done.
type ResultBatch struct {
	Results []Result   `cbor:"1,keyasint,omitempty"`
	Cursor  uint64     `cbor:"2,keyasint"`
	Status  *JobStatus `cbor:"3,keyasint,omitempty"`
}

// JobListRequest lists jobs known to the node.
type JobListRequest struct{}

// JobList is the node's jobs, newest first.
type JobList struct {
	Jobs []JobStatus `cbor:"1,keyasint"`
}

// NodeInfoRequest asks a node about itself.
type NodeInfoRequest struct{}

// NodeInfo describes a node.
type NodeInfo struct {
	NodeID      string            `cbor:"1,keyasint"`
	Incarnation uint64            `cbor:"2,keyasint"`
	Epoch       uint64            `cbor:"3,keyasint"`
	Addr        string            `cbor:"4,keyasint"`
	Labels      map[string]string `cbor:"5,keyasint,omitempty"`
	Slots       int               `cbor:"6,keyasint"`
	Running     int               `cbor:"7,keyasint"`
	Isolation   string            `cbor:"8,keyasint"`
	Version     string            `cbor:"9,keyasint"`
	Started     time.Time         `cbor:"10,keyasint"`
	MaxLimits   Limits            `cbor:"11,keyasint"`
}

// MembersRequest asks a node for its picture of the cluster.
type MembersRequest struct{}

// Members is the cluster as the answering node sees it.
type Members struct {
	NodeID string `cbor:"1,keyasint"` // the node that answered
	Epoch  uint64 `cbor:"2,keyasint"`
	Leader string `cbor:"3,keyasint,omitempty"` // the monitors' leader, as last heard
	// Quorum is true while the answering node holds a fresh view from the
	// monitors' majority; NoQuorum says why not.
	Quorum   bool          `cbor:"4,keyasint"`
	NoQuorum string        `cbor:"5,keyasint,omitempty"`
	LeaseAge time.Duration `cbor:"6,keyasint"` // since the leader last held a majority; -1 never
	Members  []Member      `cbor:"7,keyasint"`
}

// Member is one node of the cluster.
type Member struct {
	NodeID      string            `cbor:"1,keyasint"`
	Incarnation uint64            `cbor:"2,keyasint"`
	Addr        string            `cbor:"3,keyasint"`
	Labels      map[string]string `cbor:"4,keyasint,omitempty"`
	State       string            `cbor:"5,keyasint"` // alive, dead or left
	Monitor     bool              `cbor:"6,keyasint,omitempty"`
	Leader      bool              `cbor:"7,keyasint,omitempty"`
	Self        bool              `cbor:"8,keyasint,omitempty"` // the node that answered
	Slots       int               `cbor:"9,keyasint"`
	Running     int               `cbor:"10,keyasint"`
	Free        int               `cbor:"11,keyasint"`
	// LastHeard is the time since the answering node last heard from it;
	// -1 when it never did (it does not watch every member in a large
	// cluster).
	LastHeard time.Duration `cbor:"12,keyasint"`
	// Timeout is the failure detector's current estimate for it; 0 when the
	// answering node does not watch it.
	Timeout time.Duration `cbor:"13,keyasint,omitempty"`
	Suspect bool          `cbor:"14,keyasint,omitempty"`
}

// LeaveRequest asks a node to leave the cluster on purpose.
type LeaveRequest struct{}

// LeaveReply confirms the node left; it stops after replying.
type LeaveReply struct {
	Epoch uint64 `cbor:"1,keyasint"`
}
