// Package agent is the node daemon: it keeps a session with the managers,
// converges the containers of this node to the tasks assigned to it,
// checks their health and reports their state. It drives agent/image and
// agent/runtime; it must not import manager, store, deploy or scheduler.
package agent
