// Package deploy turns desired state into tasks: the leader-only
// orchestrators that keep every service's set of live tasks matching its
// spec, restart tasks under their restart policy, move tasks off drained,
// down or removed nodes, and reap old tasks.
//
// One Orchestrator runs them all from one goroutine over a watched store
// (swarmkit's manager/orchestrator/replicated, global, restart and
// taskreaper are the model). It is level-triggered: Run reconciles every
// service from a view of the store, then follows changes from that view's
// index and reconciles only what they touch; after a leader change or a
// lagging watch it starts again from state alone, since every decision
// (restart delays and attempt counts included) is derived from the stored
// tasks, not from memory.
//
// The unit of work is one slot of a replicated service (slots 1..replicas)
// or one node of a global service. A unit holds at most one task with
// desired state RUNNING or earlier: the orchestrator shuts the old task down
// in the same atomic write that creates its replacement, so no view of the
// store ever shows two live tasks in one slot.
//
// New tasks are written with status PENDING and desired state RUNNING;
// replicated tasks have no node (the scheduler picks one), global tasks
// carry the node they belong to (the scheduler only checks that it fits).
// The orchestrator sets desired states only (SHUTDOWN for every task it
// retires); the dispatcher tells agents, and agents report status. Tasks
// that never reached a node are deleted rather than stopped.
//
// Tasks of no service are standalone containers' network attachments
// (TaskSpec.attachment), made and ended by the dispatcher for their node:
// the orchestrator never replaces them, and only clears away those that
// ended or whose node was removed; a down node keeps them
// (decideAttachments). The Updater passes them by.
//
// The Updater (update.go, updater.go) is a second leader-only loop: when a
// service's task spec changes it replaces the units still on an older spec
// under the service's update (or rollback) policy, Swarm's semantics, and
// keeps the service's update status; the orchestrator goes on filling
// empty units and restarting tasks with the current spec meanwhile.
//
// deploy must not import agent or overlay code, and it does not speak gRPC.
package deploy
