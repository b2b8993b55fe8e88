// Package sdk is the Go client of a gridnode grid: dial any node, upload a
// module, submit a job of work items (streamed, so a job of a million items
// never sits in memory), follow its status, read its results through a
// resumable cursor, and cancel it.
//
// Connections are QUIC with mutual TLS: the client presents a certificate
// from the cluster's CA. `gridnode dev` and `gridnode agent` issue one and
// write a profile (see LoadProfile) that names the node and the files.
//
// Job modules themselves are written with any wasm32-wasip1 toolchain; for
// Go, the guest package (sdk/guest) wraps the job ABI.
//
// sdk depends on transport and the wire messages in sdk/api only: it never
// imports the node's packages.
package sdk
