// Package grid owns a node's place in the cluster: its identity (a
// persistent node ID plus an incarnation that grows with every start and
// rejoin), the view of the cluster it works under (an epoch and the members
// with their state), and the protocol that keeps that view true.
//
// The protocol, in the order a node meets it:
//
//   - Join: a new node (or one restarted with a new incarnation, perhaps on
//     a new address) asks any member; the call reaches the monitors' leader,
//     which commits the join and answers with the view.
//   - Heartbeats: every Interval each node sends a datagram to the peers that
//     watch it and that it watches (everyone up to FullMeshLimit live
//     members, a ring of RingWatch neighbours beyond) plus a few random
//     members. It carries the sender's epoch and view digest, its load and
//     free slots, its word on the leader's lease, and the delta of its
//     inventory of executions for peers that follow it (WatchInventory).
//   - Detection: an adaptive per-peer delay (detector.go) turns silence into
//     suspicion and then into a local verdict. A verdict is only a report;
//     the leader declares a node dead once a majority of its observers
//     reported it, which commits a new epoch. A node that runs late itself
//     holds its reports back; when many peers look dead at once, timeouts
//     stretch and the leader waits.
//   - Monitors: 1, 3 or 5 nodes run hashicorp/raft over raw streams on the
//     node's transport, with the log in bbolt (raftstore.go). The leader
//     replaces dead or departed monitors with live members on new hosts.
//     Every committed change goes through Apply (change.go), the one epoch
//     transition function; nodes that are not monitors replay the same
//     changes when they sync.
//   - Quorum and fencing: the leader proves its majority every few hundred
//     milliseconds and the proof's age travels on heartbeats. A node whose
//     proof is older than LeaseTimeout holds no quorum: Quorum returns
//     ErrNoQuorum and the node stops committing and accepting jobs.
//   - Undead and leave: a node declared dead that speaks again is answered
//     with a newer epoch, finds itself dead, abandons its executions and
//     rejoins under a new incarnation. Leave records the node as left and
//     hands a monitor's vote over first.
//
// Bucket ownership (placement.go) and who watches whom (topology.go) are pure
// functions of the view. grid never knows about jobs or modules; its
// decision code takes values and returns values, without clocks, sockets or
// goroutines, so that it can be tested exhaustively. Protocol tests run the
// real nodes on transport's in-memory network inside testing/synctest.
package grid
