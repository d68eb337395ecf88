// Package manager assembles a manager: its identity (bootstrap a cluster
// or join one), the Raft node, one mutual-TLS port serving gRPC and Raft,
// the API servers (controlapi, nodeca, raftapi), consistent reads and
// forwarded writes, and the leader-only loops. It is a thin assembly: each
// job lives in its own small package, and Manager.Run takes its steps in
// order, a file each (identity, raft, ca, servers, leader). It must not
// import agent code.
package manager
