// Package overlay is berth's network plumbing. Its subpackages split it by
// side: ipam carves the cluster pool and hands out addresses (pure),
// allocator is the leader's loop that gives networks, tasks and services
// their addresses before tasks are scheduled. Nothing here imports deploy
// or scheduler: the orchestrator and the placement loop never see how
// addresses are chosen, only that a task has them.
package overlay
