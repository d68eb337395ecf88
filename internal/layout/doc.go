// Package layout holds no code: its test keeps the dependency directions of
// DESIGN.md true (cmd → manager/agent → deploy/scheduler/overlay/discovery →
// store → proto), as Nomad's CI does for its api package.
package layout
