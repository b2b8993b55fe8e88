package grid

import (
	"crypto/sha256"
	"encoding/binary"
	stdmaps "maps"
	"slices"
	"strconv"
)

// State is what the cluster has agreed about a member.
type State uint8

// Member states. Only the monitors' consensus moves a member between them;
// a local suspicion is not a state of the view.
const (
	Alive State = iota + 1
	Dead        // declared dead by the monitors (a crash, a pause, a cut)
	Left        // left on purpose; its duties were handed over
)

func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Member is one node as a view knows it.
type Member struct {
	NodeID      string            `cbor:"1,keyasint"`
	Incarnation uint64            `cbor:"2,keyasint"`
	Addr        string            `cbor:"3,keyasint"`
	Labels      map[string]string `cbor:"4,keyasint,omitempty"`
	Slots       int               `cbor:"5,keyasint"` // capacity: concurrent executions
	State       State             `cbor:"6,keyasint"`
	Monitor     bool              `cbor:"7,keyasint,omitempty"` // votes in the monitors' consensus
}

// Host is the member's host failure domain: its "host" label, or its node ID
// when it has none (each unlabelled node is its own host).
func (m Member) Host() string {
	if h := m.Labels["host"]; h != "" {
		return h
	}
	return m.NodeID
}

// Zone is the member's "zone" label, "" when it has none.
func (m Member) Zone() string { return m.Labels["zone"] }

// Live reports whether the member takes part in placement.
func (m Member) Live() bool { return m.State == Alive }

// View is the cluster as a node works under it: an epoch and its members,
// sorted by node ID. Every placement is a pure function of (View, key).
type View struct {
	Epoch   uint64   `cbor:"1,keyasint"`
	Members []Member `cbor:"2,keyasint"`
}

// SingleNode is the view of a node that runs alone: itself, at epoch 1.
func SingleNode(self Member) View {
	self.State = Alive
	self.Monitor = true
	return View{Epoch: 1, Members: []Member{self}}
}

// Member returns the member with node ID id.
func (v View) Member(id string) (Member, bool) {
	i, ok := index(v, id)
	if !ok {
		return Member{}, false
	}
	return v.Members[i], true
}

// Live returns the members in state Alive, in node ID order.
func (v View) Live() []Member {
	out := make([]Member, 0, len(v.Members))
	for _, m := range v.Members {
		if m.Live() {
			out = append(out, m)
		}
	}
	return out
}

// Monitors returns the members that vote in the monitors' consensus.
func (v View) Monitors() []Member {
	var out []Member
	for _, m := range v.Members {
		if m.Monitor {
			out = append(out, m)
		}
	}
	return out
}

// Digest summarises the view in 8 bytes: two nodes whose digests match hold
// the same view. Heartbeats carry it so that a mismatch triggers a sync.
func (v View) Digest() uint64 {
	h := sha256.New()
	var b [8]byte
	num := func(n uint64) {
		binary.BigEndian.PutUint64(b[:], n)
		h.Write(b[:])
	}
	str := func(s string) { // length-prefixed: no value can pose as two
		num(uint64(len(s)))
		h.Write([]byte(s))
	}
	num(v.Epoch)
	num(uint64(len(v.Members)))
	for _, m := range v.Members {
		str(m.NodeID)
		num(m.Incarnation)
		str(m.Addr)
		num(uint64(m.State))
		if m.Monitor {
			num(1)
		} else {
			num(0)
		}
		num(uint64(m.Slots))
		keys := slices.Sorted(stdmaps.Keys(m.Labels))
		num(uint64(len(keys)))
		for _, k := range keys {
			str(k)
			str(m.Labels[k])
		}
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Clone returns a deep copy, so a view handed out can never be changed by
// whoever holds another copy.
func (v View) Clone() View {
	out := View{Epoch: v.Epoch, Members: make([]Member, len(v.Members))}
	for i, m := range v.Members {
		if m.Labels != nil {
			m.Labels = stdmaps.Clone(m.Labels)
		}
		out.Members[i] = m
	}
	return out
}
