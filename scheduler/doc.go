// Package scheduler places pending tasks on nodes. Placement is a pure
// function of a snapshot of pending tasks and nodes and a clock: filters
// (readiness, resources, constraints, ports), scoring (spread, preferences,
// binpack) and the reasons a task cannot be placed.
//
// It must not do store I/O, speak gRPC or read the wall clock.
package scheduler
