// Package scheduler places pending tasks on nodes. Placement is a pure,
// deterministic function of a snapshot: the nodes, the live tasks already
// on them and the pending tasks go in; assignments, and for every task no
// node could take a reason a person can act on, come out.
//
//	res := scheduler.Schedule(nodes, running, pending)
//	// or, keeping the accounting across batches of one snapshot:
//	c := scheduler.New(nodes, running)
//	res := c.Place(pending)
//
// Filters refuse nodes that are not ready, paused or drained, that do not
// meet a task's constraints, lack the CPU or memory it reserves, already
// bind one of its host-mode ports or already run max-replicas-per-node of
// its service; each says why, and a task left over gets
// "no suitable node (insufficient memory on 3 nodes; ...)". Among the rest,
// tasks spread over the values of each placement preference in turn, then
// over nodes (fewest tasks of the service, then fewest tasks overall), or
// binpack onto the fullest node that fits.
//
// Pending tasks sharing a service and placement form one group: the nodes
// are filtered once per group and each task is a walk down a heap, so a
// batch of 100,000 tasks takes well under a second on 5,000 nodes.
//
// The caller commits assignments in one store batch, re-checking each with
// NodeState.Fits against the store as it is then (a plan applier), and
// stamps the time on task status; the scheduler reads no clock. It must not
// do store I/O or speak gRPC.
package scheduler
