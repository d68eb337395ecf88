// Package manager assembles a manager: its identity (bootstrap a cluster
// or join one), the Raft node, one mutual-TLS port serving gRPC and Raft,
// the API servers (controlapi, nodeca, raftapi), consistent reads and
// forwarded writes, and the leader-only loops. It is a thin assembly: each
// job lives in its own small package. It must not import agent code.
package manager
