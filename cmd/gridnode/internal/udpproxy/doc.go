// Package udpproxy is a fault-injecting UDP proxy for process-level tests:
// real gridnode processes on loopback talk QUIC through it, and the test
// drops, delays, blocks and partitions their packets. It stands in for
// `tc netem`, which the kernels we test on do not have.
//
// Model. Every node X has a real socket Real(X) that it both listens and
// dials from, and a public address Public(X) opened by the proxy, which X
// advertises instead of Real(X). A packet arriving at Public(Y) from Real(X)
// is traffic X→Y; from any other address it is from an outside client (the
// CLI), named "client" in Stats. The proxy sends it on to Real(Y) from an
// upstream socket of its own, one per (source, Y), so that what Y answers on
// that socket goes back to the source from Public(Y): each side only ever
// sees the other's public address. Upstream sockets idle for two minutes are
// closed.
//
// Rules are per direction and name nodes, "*" matching any: loss (random per
// packet from the seeded generator, so a seed replays a schedule as long as
// packets arrive in the same order), delay with jitter (which reorders),
// blocks, and partitions into groups. Outside clients are subject only to
// blocks: Block("*", Y) isolates Y from everyone, clients included, while
// loss, delay and partitions never touch client traffic.
//
// It owns its sockets and goroutines (one reader per socket, one for delayed
// packets); Close releases all of them and waits.
//
// It must never:
//   - be used by the product: it is test-only tooling, imported by tests and
//     test harnesses of cmd/gridnode and nothing else; a node never runs
//     behind it outside a test;
//   - inspect, rewrite or decrypt payloads: it moves opaque datagrams and
//     decides their fate from addresses and rules alone;
//   - block a reader on a slow destination or a delay: delayed packets wait
//     in a timer heap, and a failed write is counted and forgotten.
package udpproxy
