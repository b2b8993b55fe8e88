package grid

// Messages between nodes. Heartbeats are datagrams; everything else is a
// call on the node's transport server. All of them are CBOR with integer
// keys, decoded strictly by the transport.

// Methods nodes call on each other. Only peers with a node certificate may
// call them.
const (
	methodJoin    = "grid.join"    // joinRequest → joinResponse; forwarded to the monitors' leader
	methodLeave   = "grid.leave"   // leaveRequest → viewResponse; forwarded to the leader
	methodReport  = "grid.report"  // reportRequest → reportResponse; to the leader
	methodView    = "grid.view"    // viewRequest → viewResponse; any node
	methodInv     = "grid.inv"     // invPush → invAck; an inventory delta too large for a heartbeat
	methodMonitor = "grid.monitor" // monitorRequest → monitorResponse; leader asks a node to start its consensus peer
)

// heartbeat is the datagram every node sends its targets every interval.
// It must stay under transport.MaxDatagramSize; inventory entries fill what
// is left.
type heartbeat struct {
	From   string `cbor:"1,keyasint"`
	Inc    uint64 `cbor:"2,keyasint"`
	To     string `cbor:"3,keyasint"` // the intended receiver: an address reused by another node drops it
	Epoch  uint64 `cbor:"4,keyasint"`
	Digest uint64 `cbor:"5,keyasint"` // of the sender's view
	Load   uint32 `cbor:"6,keyasint"` // running executions
	Free   uint32 `cbor:"7,keyasint"` // free execution slots
	// LeaseAge is how long ago, in ms, the sender last knew the monitors'
	// leader to hold a majority; -1 when it knows no valid lease.
	LeaseAge int64  `cbor:"8,keyasint"`
	Leader   string `cbor:"9,keyasint,omitempty"`  // the sender's idea of the leader
	Want     bool   `cbor:"10,keyasint,omitempty"` // the sender watches the receiver's inventory

	// The sender's inventory: its version and digest, and changes (From, To].
	InvVersion uint64      `cbor:"11,keyasint"`
	InvDigest  uint64      `cbor:"12,keyasint"`
	InvFrom    uint64      `cbor:"13,keyasint,omitempty"`
	InvTo      uint64      `cbor:"14,keyasint,omitempty"`
	Inv        []Execution `cbor:"15,keyasint,omitempty"`
	// Ack is the version of the receiver's inventory the sender holds, for
	// the receiver's incarnation AckInc.
	Ack    uint64 `cbor:"16,keyasint,omitempty"`
	AckInc uint64 `cbor:"17,keyasint,omitempty"`
}

type joinRequest struct {
	Member Member `cbor:"1,keyasint"`
	Hops   int    `cbor:"2,keyasint,omitempty"`
}

type leaveRequest struct {
	NodeID      string `cbor:"1,keyasint"`
	Incarnation uint64 `cbor:"2,keyasint"`
	Hops        int    `cbor:"3,keyasint,omitempty"`
}

// reportRequest carries a node's local verdicts: the members it finds dead.
// Reports are resent while the verdict holds; the leader counts fresh ones.
type reportRequest struct {
	From    string   `cbor:"1,keyasint"`
	FromInc uint64   `cbor:"2,keyasint"`
	Epoch   uint64   `cbor:"3,keyasint"`
	Dead    []Member `cbor:"4,keyasint"` // NodeID and Incarnation of each
	Hops    int      `cbor:"5,keyasint,omitempty"`
}

type reportResponse struct {
	Leader string `cbor:"1,keyasint,omitempty"`
}

// viewRequest asks for what changed after epoch Since; Since 0 asks for the
// whole view.
type viewRequest struct {
	Since uint64 `cbor:"1,keyasint"`
}

// viewResponse is either the changes after the asked epoch, in order, or
// the whole view when the answering node no longer holds them.
type viewResponse struct {
	Changes []Change `cbor:"1,keyasint,omitempty"`
	View    *View    `cbor:"2,keyasint,omitempty"`
	Leader  string   `cbor:"3,keyasint,omitempty"`
}

type invPush struct {
	From    string      `cbor:"1,keyasint"`
	Inc     uint64      `cbor:"2,keyasint"`
	Full    bool        `cbor:"3,keyasint,omitempty"`
	FromVer uint64      `cbor:"4,keyasint,omitempty"`
	ToVer   uint64      `cbor:"5,keyasint"`
	Digest  uint64      `cbor:"6,keyasint"`
	Entries []Execution `cbor:"7,keyasint,omitempty"`
}

type invAck struct{}

type monitorRequest struct {
	Epoch uint64 `cbor:"1,keyasint"`
}

type monitorResponse struct{}
