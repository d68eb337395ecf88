// Package store keeps the cluster state: typed in-memory tables (go-memdb) of
// nodes, services, tasks, networks, secrets, configs and the cluster object, atomic
// transactions over them, and watches that replay changes from a store index
// and then follow live changes without a gap.
//
// Writes are built against a private scratch copy (so a transaction reads its
// own writes and fails early), turned into one berthv1.StoreBatch, and handed
// to a Proposer. The Raft backend (package raftstore) replicates the batch and
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
