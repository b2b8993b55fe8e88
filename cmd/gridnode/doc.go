// Command gridnode is the one binary of a gridnode grid: the node agent
// (agent), a one-command local node (dev), the demo, benchmarks (bench), a
// local runner for job authors (run-local), and the client commands (module
// push, job run/submit/status/results/cancel/list, info, members, leave).
// An agent joins a cluster with --join and leaves it on SIGTERM.
//
// demo and bench start a small cluster inside the process (localGrid): real
// nodes on loopback QUIC, each with its own data dir and host label, the
// first founding the cluster and the others joining it with its CA, exactly
// as agents started with --join and --cluster-ca would.
//
// It is wiring only: flags, output, exit codes. What a node does lives in
// sched, grid, plugins and transport; what a client does lives in sdk. The
// same binary is its own sandbox worker: started with GRIDNODE_WORKER=1 it
// serves executions for the node that started it (plugins.MaybeServeWorker).
package main
