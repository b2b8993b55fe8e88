// Package transport moves bytes between gridnode processes and nothing else.
//
// It owns:
//   - the Network abstraction (Listener, Conn, Stream, datagrams) and its two
//     implementations: QUIC (quic-go, TLS 1.3 mutual authentication, 0-RTT
//     off, ALPN "gridnode/1") and MemNetwork, an in-memory network with
//     per-direction delay, datagram loss and partitions that runs inside
//     testing/synctest bubbles;
//   - identity: the cluster CA, node and client certificates whose URI SAN
//     (gridnode://node/<id>, gridnode://client/<name>) is the Peer every
//     connection reports;
//   - framing: a 4-byte big-endian length prefix with a hard cap checked
//     before anything is allocated;
//   - the codec: canonical CBOR out, one strict decode mode in (no duplicate
//     keys, no indefinite lengths, no tags, bounded nesting and lengths);
//   - calls: one stream per call, unary or streaming in both directions,
//     ending in success or one *Error with a stable Code; raw streams for
//     protocols with their own framing (the monitors' Raft); datagrams,
//     delivered to a handler for the connections a server accepts.
//
// A QUIC node dials from its listening socket, so peers see one address per
// node, and derives its stateless reset key from its private key, so that a
// restarted node resets connections its previous process held.
//
// It must never:
//   - know about jobs, items, views, epochs or any other grid concept: method
//     names and message types belong to the callers;
//   - trust a peer: every byte from the network is capped before it is
//     allocated and decoded strictly; malformed input ends one call with
//     CodeBadFrame or CodeTooLarge, never the process;
//   - accept a peer that is not authenticated by the cluster CA, or let a
//     client certificate act as a node;
//   - block the caller forever: every blocking call takes a ctx or honours a
//     deadline, and Close of a Server waits for every goroutine it started;
//   - read the wall clock for protocol decisions in MemNetwork: it uses only
//     timers and channels so that tests run in virtual time.
package transport
