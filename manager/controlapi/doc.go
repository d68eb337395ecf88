// Package controlapi serves the Control API the CLI uses: services, tasks,
// nodes, networks, secrets, configs and the cluster. Every spec passes through
// manager/validate; every write is one store transaction; store errors
// become gRPC status codes a client can branch on. Secret data and registry
// passwords are sealed with the cluster key before they are stored and are
// never returned: a service's and a task's registry credentials read back
// as server and username only.
//
// Reads are consistent: each read first passes the Reads barrier the
// manager supplies (on the leader: a Raft barrier; on a follower: the
// leader's applied index, waited for locally — a read index), so a read
// sees every write acknowledged before it started, wherever it is served.
package controlapi
