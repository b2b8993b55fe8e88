// Package sched turns accepted jobs into committed results across the
// cluster.
//
// A node plays three parts, for different jobs and items at once:
//
//   - Home (scheduler.go, store.go): the first live holder of a job
//     (ledger.go, holder.go, holderstore.go). A job's holders are fixed
//     when it is accepted: the accepting node, then two members on other
//     hosts. Each keeps the job's record, item inputs and result log in a
//     bbolt store in its data dir; a job, a batch of results and a state
//     change are acknowledged once a majority of the holders fsynced them.
//     The home assigns each item to the primary of the item's bucket under
//     the current view, a window at a time, and appends the coordinators'
//     decisions to the job's result log in commit order, exactly once (the
//     done bitset and the single committer decide). An item stays with its
//     coordinator until it commits or the coordinator leaves the view or
//     restarts; only then does it move, so a join moves nothing in flight.
//     A node that becomes home (the one before died, left or restarted)
//     gathers a majority of the holders first: they promise its term and
//     refuse older homes, and it continues the best copy among them. A
//     home whose job lost a holder for good copies the job to one more
//     member; the list of holders only grows, one at a time.
//   - Coordinator (coordinator.go): for each item assigned to it, it places
//     Replicas executions by capacity-weighted rendezvous on distinct hosts
//     (placement.go), skipping executors with no queue room (as they last
//     announced it, less what it sent them since) and nodes quarantined for
//     the job's module; follows them through the executors' reports and, as
//     a fallback, their heartbeat inventories (running: the deadline starts;
//     finished: the digest; absent after a restart: lost); tallies their
//     outcome digests (vote.go); takes the canonical outcome from the
//     report that carried it (small outcomes ride along) or else fetches it
//     from one executor that gave it; rolls back every other execution; and
//     hands the result (with any children the execution emitted) to the
//     home. Disagreement and lost executions add executions until a quorum
//     agrees or the attempts run out. Reputation (reputation.go) counts per
//     node and module the results that agreed in a row, quarantines nodes
//     that keep disagreeing, and drives adaptive replication.
//   - Executor (executor.go): a bounded queue and one goroutine per slot;
//     it fetches a module it lacks from a peer by hash (and checks the
//     hash), runs the execution in the plugins sandbox, and keeps its
//     outcome staged until the coordinator takes or drops it. Executions
//     whose coordinator is gone are rolled back. Checkpoints a running
//     execution saves go to the job's home (checkpoints.go), which hands
//     them on to the other holders; each keeps the newest one per
//     unfinished item in its store; an execution that replaces a lost one (the coordinator
//     marks its item) fetches it first and resumes there.
//
// Every hop between the parts is batched (outbox.go) and a call a node
// makes to itself skips the network. In steady state an execution costs
// one report: its reply carries the roll-backs and releases the
// coordinator has for that executor and new executions up to the room the
// report announced. What a node still pays for the hops is measured by
// gridnode bench. The node-to-node methods (wire.go) accept only callers
// with a node certificate.
//
// While grid says the node holds no quorum, the node refuses new jobs
// (code no_quorum) and its committer holds results in memory.
//
// The vote, placement and reputation are pure: values in, values out, no
// clocks, goroutines or I/O, so that they are tested exhaustively.
//
// sched must never talk to sockets directly (transport and grid do) and
// never run WebAssembly itself (plugins does). A result is visible to
// clients only after a majority of its job's holders has it durably; a job
// is acknowledged only after all of its items are on a majority of them.
// Any node serves any job's status, results and cancel by passing the call
// to the job's home.
package sched
