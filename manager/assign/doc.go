// Package assign is the leader's scheduling loop (DESIGN.md, control loop 2):
// it feeds the pure placement engine in package scheduler from the store
// and commits its decisions.
//
// The loop takes a snapshot of the nodes and tasks and then follows the
// store's changes from that index. Whenever pending tasks exist and
// something that could change where they go happens (a task becomes
// pending, a node comes, goes or changes, a task leaves its node and frees
// what it reserved), it waits a short coalescing window, places every
// pending task in one pass and writes the outcome in one store batch.
//
// The scheduler decides on the loop's copy of the state; the write checks
// again, inside the write transaction and against the store as it is then,
// that each chosen node still takes its task (Nomad's plan applier). A task
// that no longer fits is not written and stays pending for the next round.
// A task no node can take stays pending with the scheduler's reason in its
// status ("no suitable node (insufficient memory on 3 nodes)"), written only
// when the reason changes.
//
// The package owns no placement policy (that is package scheduler's) and
// runs only on the leader: the manager starts Run with the leadership
// context and Run stops when it ends.
package assign
