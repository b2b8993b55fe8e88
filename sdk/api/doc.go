// Package api holds the messages that cross the wire between clients and nodes:
// method names, requests, replies and the stable error codes. Both the node
// (sched) and the Go client (sdk) speak exactly these types, so a field added
// here is added for both sides at once.
//
// Every struct uses integer CBOR keys (keyasint): they are compact and they let
// a field be renamed in Go without breaking the wire.
package api
