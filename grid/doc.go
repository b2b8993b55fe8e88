// Package grid owns a node's place in the cluster: its identity (a persistent
// node ID plus an incarnation that grows with every start), its labels, and
// the view of the cluster it works under.
//
// Today a node runs alone: its view holds itself at epoch 1. Membership,
// failure detection, heartbeats, monitors and bucket ownership come here as
// the cluster grows; sched reads views, never sockets.
//
// grid must never know about jobs or modules, and its decision code (views,
// epochs) takes values and returns values: no clocks, no goroutines.
package grid
