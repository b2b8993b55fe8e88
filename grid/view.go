package grid

// Member is one node as a view knows it.
type Member struct {
	NodeID      string
	Incarnation uint64
	Addr        string
	Labels      map[string]string
	Slots       int
}

// View is the cluster as a node works under it: an epoch and its members.
// Every placement is a pure function of (View, key).
type View struct {
	Epoch   uint64
	Members []Member
}

// SingleNode is the view of a node that runs alone: itself, at epoch 1.
func SingleNode(self Member) View {
	return View{Epoch: 1, Members: []Member{self}}
}
