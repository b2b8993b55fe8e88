// Package harness runs a cluster of real `gridnode agent` processes on
// loopback for process-level tests: it builds the binary, starts N agents
// (optionally behind a udpproxy that drops, delays and partitions their
// traffic), kills, pauses, terminates and restarts them, and polls what every
// node's Members call says until a condition holds.
//
// Layout. Node i (1-based) has node ID "n<i>" and a directory under the
// test's temp dir holding its data dir (data/), the client profile the agent
// writes (profile.json) and its log (agent.log: stdout and stderr, appended
// across restarts with a marker line). n1 founds the cluster; the others join
// through n1's advertised address with n1's data/tls as --cluster-ca.
//
// Binaries, labels and environment. Every node runs Binary (built once per
// test process) unless Options.Binary names another; the nodes listed in
// Options.FaultyNodes run BinaryWithTags(t, FaultsTag) instead, the build
// in which plugins read GRIDNODE_FAULT_* variables, with those variables in
// their environment. Options.Labels gives each node its --labels
// (HostLabels: host=h<i>, one host per node), Options.Env more environment.
// A node keeps its binary, labels and environment across restarts; its log
// starts each run with the command line, environment included.
//
// Addresses. Every node listens on a real UDP port picked by binding
// 127.0.0.1:0 and closing the socket; another process may take the port
// before the agent binds it. The harness then sees the agent exit with
// "address already in use" and starts it again on a fresh port, up to three
// times (not for a restart that keeps its port). Without the proxy a node
// advertises its real address; with it, the public address the proxy opened
// for it, which never changes. Clients (Client, Members, the CLI through the
// profile) dial the real address: they bypass the proxy, so a partition
// never hides a node from the test.
//
// Restart keeps the node ID and data dir, so the node comes back with its
// incarnation bumped. With newPort it listens on a new real port: without the
// proxy its advertised address changes (a replacement machine with the old
// ID); with the proxy the public address stays and only the proxy's idea of
// the real address moves (SetReal). A restarted node joins through every
// other running node, not only n1, so that n1 may be dead.
//
// It waits by polling with deadlines, never by sleeping, and it never
// asserts times: measuring them is the tests' business. The agents are not
// built with -race even when the tests are.
//
// It must never:
//   - be imported by anything but tests of cmd/gridnode;
//   - leave a process behind: Start registers a cleanup that SIGKILLs and
//     reaps every agent, and on Linux each agent also gets SIGKILL when the
//     test process dies (a timeout panic skips cleanups);
//   - call t.Fatal from a goroutine other than the test's: the polling
//     helpers return errors instead.
package harness
