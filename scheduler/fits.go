package scheduler

import (
	pb "berth/proto/berth/v1"
)

// NoFitError says a task cannot go to a node any more, e.g. because the
// store changed between the snapshot Place decided on and the commit.
type NoFitError struct {
	TaskID string
	NodeID string
	// Reason is the first filter that refused, e.g. "insufficient memory".
	Reason string
}

func (e *NoFitError) Error() string {
	return "task " + e.TaskID + " does not fit node " + e.NodeID + ": " + e.Reason
}

// NodeState is one node and what the live tasks on it hold. The commit step
// (Nomad's plan applier) builds one per node from the store as it is at
// commit time and re-checks each assignment with Fits, adding the tasks it
// accepts, so a node that filled up or went away since the snapshot sends
// its tasks back to pending instead of overcommitting.
type NodeState struct {
	n *nodeInfo
}

// NewNodeState builds the state of node n from its live tasks. Tasks of
// other nodes, and tasks past running, are ignored.
func NewNodeState(n *pb.Node, tasks []*pb.Task) *NodeState {
	s := &NodeState{n: newNodeInfo(n)}
	for _, t := range tasks {
		if t.GetNodeId() == s.n.id && holdsResources(t) {
			s.n.add(t)
		}
	}
	return s
}

// Fits returns nil when t can run on the node next to the tasks it holds:
// the node is ready and active, meets t's constraints and has room (CPU,
// memory, host ports, max replicas per node). Otherwise it returns a
// *NoFitError, or an error for constraints that do not parse.
func (s *NodeState) Fits(t *pb.Task) error {
	p, err := newPipeline(t)
	if err != nil {
		return err
	}
	if f := p.refuse(s.n); f != nil {
		return &NoFitError{TaskID: t.GetId(), NodeID: s.n.id, Reason: f.reason()}
	}
	return nil
}

// Add records t as running on the node, so later Fits calls count it.
func (s *NodeState) Add(t *pb.Task) { s.n.add(t) }

// Fits reports whether t can run on node n next to the node's live tasks;
// see NodeState.Fits.
func Fits(n *pb.Node, tasks []*pb.Task, t *pb.Task) error {
	return NewNodeState(n, tasks).Fits(t)
}
