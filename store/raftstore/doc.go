// Package raftstore replicates a store.MemoryStore with hashicorp/raft: a
// durable log and stable store in BoltDB (raft-boltdb/v2), file snapshots
// taken by the bytes of log since the last one (snappolicy.go), log
// compaction after each, and LAN-tuned timeouts.
//
// A log entry is one type byte and a payload. Type 0 is a berthv1.StoreBatch
// applied atomically to the store. A type with the high bit set (an
// "ignorable" type a newer version added) is skipped with a warning; any
// other type, or a payload that does not decode, stops the process with a
// panic: applying past it would let this replica diverge (Nomad's fsm.go
// does the same).
//
// Writes commit only on the leader. On a follower, Propose fails with a
// *NotLeaderError naming the leader; the manager forwards the batch to the
// leader over its gRPC RaftMembership.Propose, whose handler calls
// ApplyBatch there. Consistent reads: on the leader call Barrier and read
// the store; on a follower ask the leader's Barrier for its index and
// Store().WaitIndex(ctx, index) before reading.
//
// The package owns the Raft node and its files under Config.DataDir; it must
// not import manager, deploy, scheduler or agent code, and it does no gRPC.
package raftstore
