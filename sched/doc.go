// Package sched turns accepted jobs into committed results.
//
// It owns the job records and their result logs (a bbolt store in the node's
// data dir, fsynced before anything is acknowledged), the executor slots that
// run items in the plugins sandbox, the committer that appends each item's
// outcome to its job's result log exactly once, and the client API a node
// serves over transport (module push, submit, status, results, cancel).
//
// An item's ID is hash(job ID, index): the key that placement will use once
// the grid spreads items over many nodes. A job ID is stamped by the node
// that accepted it: its node ID, the epoch, and a durable serial.
//
// The node joins its cluster through grid at start. While grid says the
// node holds no quorum, the node refuses new jobs (code no_quorum) and its
// committer holds outcomes in memory instead of committing them.
//
// sched must never talk to sockets directly (transport does) and never run
// WebAssembly itself (plugins does). A result is visible to clients only
// after it is durable; a job is acknowledged only after all of its items are.
package sched
