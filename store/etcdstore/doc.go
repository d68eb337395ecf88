// Package etcdstore keeps the cluster state in etcd, behind the store's
// Proposer seam: every object is a key under a prefix, and each manager
// builds its in-memory view (a store.MemoryStore) from a snapshot of the
// prefix plus a watch from that snapshot's revision, so it sees every
// write once, in order, with no gap.
//
// Layout under the prefix P:
//
//	P/format            "berth-store-v1": marks the prefix as berth's
//	P/batch             the last write, as a StoreBatch
//	P/objects/T/ID      object ID of table T, as a create StoreAction
//
// A write is one etcd transaction that puts P/batch and the objects it
// changes, guarded by P/batch's revision: it commits only if nothing was
// written since the state it was checked against (compare-and-swap on
// the whole state, so the store's checks — versions, unique names — hold
// at every manager). A write built on a stale view is checked again on
// the fresh one and retried, or fails as the store would have failed it;
// it is never applied twice. Object versions are etcd revisions.
//
// It must not import the manager: the manager wires it.
package etcdstore
