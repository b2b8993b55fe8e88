// Package plugins is gridnode's sandbox host: it stores job modules by
// SHA-256, compiles them once per node with wazero's compiler engine (the
// compilation cache lives on disk in Config.Dir/cache, so a restart does not
// recompile), runs one fresh instance per execution under limits, and returns
// a classified, digested Outcome. It never applies an outcome: staging,
// voting and committing belong to sched.
//
// It depends on wazero and the standard library only. It must never let a
// module harm the node: no module may outlive its deadline by more than a
// second, exhaust the node's memory, or stall the node's goroutines.
//
// # Job ABI
//
// A job module is a WASI preview1 command (it exports _start):
//
//   - stdin is the item input (served from memory, never blocking);
//   - stdout is the output, capped at Limits.StdoutBytes: going over stops the
//     module at once and the outcome is output_too_large;
//   - stderr is the item's log: only its tail (Limits.StderrBytes) is kept and
//     a long log never fails the execution (Outcome.StderrTruncated says so);
//   - argv is [Task.Name or "job"] + Task.Args; environ is Task.Env sorted by key;
//   - the exit code is part of the outcome: 0 is ok, anything else is exit;
//   - Task.FilesDir, when set, is mounted read-only at /job; a private scratch
//     directory is mounted read-write at /tmp and removed after the execution;
//   - the host module "grid" provides progress(f64): values are clamped to
//     0..1 and the last one is Outcome.Progress (not part of the digest). A
//     module that does not import "grid" works without our SDK;
//   - grid.emit(ptr i32, len i32) -> i32 stages a child item of the same job
//     whose input is a copy of len bytes of memory at ptr. It returns 0 on
//     success; 1 when MaxEmitItems children were emitted already; 2 when the
//     input exceeds MaxEmitInput or the total would exceed MaxEmitBytes; 3
//     when [ptr, ptr+len) is outside the module's memory (checked in that
//     order; a refused call emits nothing and never traps). The children are
//     Outcome.Emitted, in order, kept only when the status is ok and covered
//     by the digest; the scheduler adds them to the job only if the outcome
//     wins the vote;
//   - grid.checkpoint_save(ptr i32, len i32) -> i32 saves a copy of len bytes
//     of memory at ptr as the execution's checkpoint, so that a long item
//     interrupted by a deadline, a crash or a lost node can resume instead of
//     starting over. It returns 0 on success; 1 when len exceeds
//     MaxCheckpoint (4 MiB: a sealed checkpoint must fit one node-to-node
//     wire frame); 3 when [ptr, ptr+len) is outside the module's memory
//     (checked in that order; 2 is not used; a refused call saves nothing and
//     never traps). The host seals each saved checkpoint (below) and hands it
//     to Task.OnCheckpoint in order while the execution runs, in both
//     isolation modes;
//   - grid.checkpoint_load(ptr i32, cap i32) -> i64 returns -1 when there is
//     no checkpoint, otherwise the payload's size n, and copies the payload to
//     [ptr, ptr+n) only when n <= cap (-3 when that range is outside memory).
//     A guest calls it with cap 0 to learn the size, then with a buffer. The
//     payload is Task.Checkpoint's until the guest saves one, then the latest
//     saved. The return codes of both depend only on the guest's own calls
//     and the task's checkpoint, so honest duplicates see the same codes.
//
// Any other import is refused when the module is added (ErrMissingImport lists
// them all). WebAssembly components are refused with a hint to rebuild for
// wasm32-wasip1.
//
// # Determinism
//
// By default two honest runs of one item produce identical bytes:
//
//   - the wall clock starts at 2000-01-01T00:00:00Z and the monotonic clock at
//     0; both advance by 1 µs on every read and by the requested duration on
//     every sleep, which returns at once (virtual time, no real waiting);
//   - the random source (WASI random_get, hence crypto/rand and the Go
//     runtime's seeds) is ChaCha8 keyed by sha256("gridnode/plugins rand v1\x00" ‖ ItemID).
//
// Task.Nondeterministic opts out: real clocks, real sleeps and crypto/rand.
// Voting then only works if the module's output does not depend on them.
//
// # Outcomes and digests
//
// Outcome.Digest is sha256 over
//
//	field("gridnode/plugins outcome v1") field(status) u32be(exit code) field(trap kind) field(stdout)
//	u32be(n) field(child 1) … field(child n)
//
// with field(b) = u64be(len(b)) ‖ b and n the number of emitted children
// (Outcome.Emitted; always 0 unless the status is ok). An execution that
// emits nothing ends in u32be(0), as it did before grid.emit existed, so its
// digest did not change. For deadline, cancelled, crashed and module_not_found, stdout is
// encoded as empty: how far a module got before a wall-clock event is not a
// property of the item. Message, Stack, Stderr, Progress, Duration, Resumed and
// CheckpointRefused are not digested: an execution resumed from a checkpoint
// must agree with one that ran from the beginning. Changing the encoding means changing the version string.
//
// # Checkpoints
//
// A sealed checkpoint (SealCheckpoint, OpenCheckpoint) is
//
//	"GNCK" u8(1) u16be(len(module)) module u32be(len(item)) item u64be(seq)
//	u32be(len(payload)) payload sha256(all the bytes before it)
//
// where module is the module's Hash as text ("sha256:…"), item the item ID
// (which contains the job ID) and seq numbers the checkpoints of an
// execution 1, 2, …, continuing from the resumed checkpoint's seq + 1. Before
// an execution, Execute opens Task.Checkpoint against the task's module and
// item: one that is not a checkpoint, truncated, corrupted, or sealed for
// another module or item is refused, the execution runs from the beginning
// (checkpoint_load returns -1) and Outcome.CheckpointRefused says why. The
// checksum detects accidents, not forgery: a checkpoint's bytes are as
// trusted as the node that stored them, and a module should check what it
// loads. Outcome.Resumed says the guest loaded the task's checkpoint.
//
// crashed, cancelled and module_not_found are Retriable: they say nothing
// about the item and must not vote.
//
// # Isolation and interruption
//
// wazero's WithCloseOnContextDone makes compiled code check for a cancelled
// context at the header of every wasm loop (wazero RATIONALE.md, "Why context
// cancellation is handled in Go code rather than native code"; the check is
// emitted for OpcodeLoop in the compiler frontend). It does not check at
// function entry, so loop-free recursion (hostile/recurse.wasm) never reaches
// a check; and since native code cannot be preempted (RATIONALE.md, "Why it's
// safe to execute runtime-generated machine codes against async Goroutine
// preemption"), such a goroutine also blocks every stop-the-world GC: the
// whole process freezes. Each check is also an exit to Go, which made a tight
// integer loop about 18x slower in our measurements.
//
// Process isolation (the default) therefore runs modules in long-lived worker
// processes WITHOUT those checks, at full speed. A worker notices its deadline
// (or a cancel) on its own and reports what the module wrote so far; the
// supervisor then SIGKILLs it and starts a replacement. If the worker cannot
// even report (its GC is frozen behind a runaway), the supervisor kills it at
// deadline + Grace. Workers run in their own process group with
// Pdeathsig=SIGKILL (Linux) so they never outlive the node, are retired after
// a memory_limit outcome and after many executions, and a worker that dies
// unexpectedly yields crashed with its stderr tail.
//
// InProcess isolation runs modules on goroutines of the caller with the loop
// checks on and a function listener before every call (guard.go), so every
// module, recursion included, stops at its deadline without freezing the
// process — at the cost of an exit to Go per loop iteration and per call.
// It saves the IPC and is meant for trusted modules, benchmarks and run-local.
// If an execution still does not return within deadline + Grace, Execute
// reports it as a runaway (deadline, with a message saying so) instead of
// waiting.
//
// Binaries that use process isolation must call MaybeServeWorker first thing
// in main (and test binaries in TestMain): the default worker command is the
// binary itself with GRIDNODE_WORKER=1.
//
// # Fault injection (test builds only)
//
// Binaries built with -tags gridnode_faults read GRIDNODE_FAULT_WRONG_OUTPUT=<p>
// (a probability in [0, 1]): Execute then appends "\x00faulty" to the stdout of
// the ok outcomes of a share p of the items, chosen by a hash of the item ID,
// and recomputes the digest, so the node is consistently, plausibly wrong and
// the vote can be tested with real disagreement. Open logs a warning when it is
// active. Without the tag no code reads the variable; FaultsBuilt says which
// build this is.
//
// # Memory
//
// Linear memory is allocated through an allocator that refuses to grow past
// Limits.MemoryBytes (rounded down to 64 KiB pages). A refused memory.grow, a
// declared minimum above the limit, or a Go guest's "out of memory" after a
// refusal are classified memory_limit.
package plugins
