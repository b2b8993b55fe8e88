package grid

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ChangeKind names a membership change.
type ChangeKind uint8

// The changes the monitors commit. Each one that changes the view advances
// the epoch by exactly one.
const (
	ChangeJoin     ChangeKind = iota + 1 // a node joins, or rejoins with a higher incarnation
	ChangeLeave                          // a node leaves on purpose
	ChangeDeath                          // the monitors declare a node dead
	ChangeMonitors                       // the set of monitors changes
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeJoin:
		return "join"
	case ChangeLeave:
		return "leave"
	case ChangeDeath:
		return "death"
	case ChangeMonitors:
		return "monitors"
	}
	return fmt.Sprintf("change(%d)", k)
}

// Change is one membership change as the monitors' log holds it.
type Change struct {
	Kind ChangeKind `cbor:"1,keyasint"`
	// Member is the joining node in full; for leave and death, its node ID
	// and the incarnation the change is about.
	Member Member `cbor:"2,keyasint"`
	// Monitors is the new set of monitors, for ChangeMonitors.
	Monitors []string `cbor:"3,keyasint,omitempty"`
	// Epoch is the epoch the change produced; set by Apply.
	Epoch uint64 `cbor:"4,keyasint,omitempty"`
}

func (c Change) String() string {
	switch c.Kind {
	case ChangeMonitors:
		return fmt.Sprintf("monitors [%s]", strings.Join(c.Monitors, " "))
	case ChangeJoin:
		return fmt.Sprintf("join %s#%d at %s", c.Member.NodeID, c.Member.Incarnation, c.Member.Addr)
	}
	return fmt.Sprintf("%s %s#%d", c.Kind, c.Member.NodeID, c.Member.Incarnation)
}

// ErrStale is returned by Apply for a change about an incarnation the view
// has already moved past: nothing changes, and the epoch stays.
var ErrStale = errors.New("grid: stale change")

// Apply returns the view after change c. It is the one epoch transition
// function: a change that alters the view yields epoch+1; a change that
// alters nothing (a repeated join, a death already recorded) returns the
// view as is with a nil error; a change about an older incarnation returns
// ErrStale. v is not modified.
//
// Rules:
//   - join: a new node is added alive. A known node with a higher
//     incarnation replaces its old self (address, labels and capacity may
//     change), alive again, and keeps its monitor flag only if it is still
//     alive when rejoining (a dead monitor was already voted out).
//   - leave and death apply only to the incarnation they name and only to
//     an alive member: a node that already left does not die, and a node
//     declared dead cannot leave.
//   - monitors: exactly the named live members are monitors.
func Apply(v View, c Change) (View, error) {
	switch c.Kind {
	case ChangeJoin:
		return applyJoin(v, c.Member)
	case ChangeLeave:
		return applyEnd(v, c.Member, Left)
	case ChangeDeath:
		return applyEnd(v, c.Member, Dead)
	case ChangeMonitors:
		return applyMonitors(v, c.Monitors)
	}
	return v, fmt.Errorf("grid: unknown change kind %d", c.Kind)
}

func applyJoin(v View, m Member) (View, error) {
	if err := ValidNodeID(m.NodeID); err != nil {
		return v, err
	}
	if m.Incarnation == 0 || m.Addr == "" {
		return v, fmt.Errorf("grid: join of %s needs an incarnation and an address", m.NodeID)
	}
	i, found := index(v, m.NodeID)
	if found {
		old := v.Members[i]
		switch {
		case m.Incarnation < old.Incarnation:
			return v, fmt.Errorf("%w: join of %s#%d, the view has #%d", ErrStale, m.NodeID, m.Incarnation, old.Incarnation)
		case m.Incarnation == old.Incarnation && old.State != Alive:
			return v, fmt.Errorf("%w: %s#%d is %s; rejoin with a higher incarnation", ErrStale, m.NodeID, m.Incarnation, old.State)
		case m.Incarnation == old.Incarnation && sameMember(old, m):
			return v, nil
		}
		m.Monitor = old.Monitor && old.State == Alive
	} else {
		m.Monitor = false
	}
	m.State = Alive
	out := v.Clone()
	out.Epoch++
	if found {
		out.Members[i] = m
	} else {
		out.Members = slices.Insert(out.Members, i, m)
	}
	return out, nil
}

// sameMember compares what a join may change. maps.Equal, not a lookup per
// key: {x:""} and {y:""} are different labels.
func sameMember(a, b Member) bool {
	return a.Addr == b.Addr && a.Slots == b.Slots && maps.Equal(a.Labels, b.Labels)
}

func applyEnd(v View, m Member, to State) (View, error) {
	i, found := index(v, m.NodeID)
	if !found {
		return v, fmt.Errorf("grid: %s is not a member", m.NodeID)
	}
	old := v.Members[i]
	switch {
	case m.Incarnation < old.Incarnation:
		return v, fmt.Errorf("%w: %s of %s#%d, the view has #%d", ErrStale, to, m.NodeID, m.Incarnation, old.Incarnation)
	case m.Incarnation > old.Incarnation:
		return v, fmt.Errorf("grid: %s of %s#%d, which never joined (the view has #%d)", to, m.NodeID, m.Incarnation, old.Incarnation)
	case old.State == to:
		return v, nil
	case old.State != Alive:
		return v, fmt.Errorf("%w: %s#%d is already %s", ErrStale, m.NodeID, m.Incarnation, old.State)
	}
	out := v.Clone()
	out.Epoch++
	out.Members[i].State = to
	out.Members[i].Monitor = false
	return out, nil
}

func applyMonitors(v View, ids []string) (View, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		i, found := index(v, id)
		if !found || v.Members[i].State != Alive {
			return v, fmt.Errorf("grid: monitor %s is not a live member", id)
		}
		want[id] = true
	}
	changed := false
	for _, m := range v.Members {
		if m.Monitor != want[m.NodeID] {
			changed = true
		}
	}
	if !changed {
		return v, nil
	}
	out := v.Clone()
	out.Epoch++
	for i := range out.Members {
		out.Members[i].Monitor = want[out.Members[i].NodeID]
	}
	return out, nil
}

func index(v View, id string) (int, bool) {
	return slices.BinarySearchFunc(v.Members, id, func(m Member, id string) int {
		return strings.Compare(m.NodeID, id)
	})
}
