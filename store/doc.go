// Package store keeps the cluster state: typed in-memory tables (go-memdb) of
// nodes, services, tasks, networks, secrets, configs and the cluster object, atomic
// transactions over them, and watches that replay changes from a store index
// and then follow live changes without a gap.
//
// Writes are staged in the writer's own maps laid over a read-only view (so
// a transaction reads its own writes and fails early, and holds no lock),
// turned into one berthv1.StoreBatch, and handed to a Proposer; only Apply
// inserts into memdb, once per change. Batch sizes its entries by bytes and
// stages the next entry while the previous one commits. The Raft backend (package raftstore) replicates the batch and
// calls Apply on every member, in log order; Apply re-checks every
// precondition (versions, names, existence) deterministically, so replicas
// never diverge and optimistic concurrency holds across concurrent writers.
// With no Proposer (unit tests, a throwaway store) writes apply locally.
//
// Objects read from the store are immutable: getters return the stored
// pointer. Clone (proto.Clone) before changing one and write the clone back.
// The store never keeps a caller's pointer: what is written is cloned (or
// decoded from the log), so changing an object after writing it does not
// change the store either.
//
// The store must not import manager, deploy, scheduler or agent code; it knows
// nothing of gRPC or of Raft itself.
package store
