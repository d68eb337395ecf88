package dispatcher

import (
	"context"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/manager/admit"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Heartbeat extends the caller's session deadline and answers the period.
func (d *Dispatcher) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	id, t, err := d.caller(ctx)
	if err != nil {
		return nil, err
	}
	period := d.period()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := t.nodes[id.NodeID]
	if req.GetSessionId() == "" || n == nil || n.sid != req.GetSessionId() {
		return nil, errUnknownSession
	}
	n.heard = d.cfg.Now()
	n.deadline = n.heard.Add(d.grace(period))
	if d.cfg.OnHeartbeat != nil {
		d.cfg.OnHeartbeat()
	}
	return &pb.HeartbeatResponse{Period: durationpb.New(period)}, nil
}

// register makes sid the node's live session, ending any older one, and
// returns the context the session's stream runs under and the channel of
// requests it is to send.
func (d *Dispatcher) register(ctx context.Context, t *term, nodeID, sid string) (context.Context, <-chan *pb.AgentRequest, error) {
	sctx, end := context.WithCancelCause(ctx)
	grace := d.grace(d.period())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != t {
		end(errStopped)
		return nil, nil, errStopped
	}
	if old := t.nodes[nodeID]; old != nil && old.end != nil {
		old.end(status.Error(codes.Aborted, "the node opened a newer session; this one ends"))
	}
	now := d.cfg.Now()
	reqs := make(chan *pb.AgentRequest, requestQueue)
	t.nodes[nodeID] = &nodeRec{sid: sid, deadline: now.Add(grace), end: end, reason: ReasonHeartbeat, heard: now, reqs: reqs, gone: sctx.Done()}
	return sctx, reqs, nil
}

// unregister notes that the stream of session sid ended: the node goes
// down unless a new session opens within the grace.
func (d *Dispatcher) unregister(t *term, nodeID, sid string) {
	grace := d.grace(d.period())
	d.mu.Lock()
	defer d.mu.Unlock()
	n := t.nodes[nodeID]
	if n == nil || n.sid != sid {
		return // replaced, expired or marked down meanwhile
	}
	n.end(nil)
	t.nodes[nodeID] = &nodeRec{deadline: d.cfg.Now().Add(grace), reason: ReasonSessionEnded}
}

// live says whether the node has a live session in term t.
func (d *Dispatcher) live(t *term, nodeID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := t.nodes[nodeID]
	return n != nil && n.sid != ""
}

// nodeReady records a node's description (its address defaults to the
// caller's IP) and marks it READY, creating the node if it is missing —
// unless it was removed: a removed node is never created again.
func (d *Dispatcher) nodeReady(ctx context.Context, id ca.Identity, desc *pb.NodeDescription) func(store.Tx) error {
	if desc != nil {
		desc = proto.Clone(desc).(*pb.NodeDescription)
		if desc.GetAddr() == "" {
			desc.Addr = remoteIP(ctx)
		}
	}
	return func(tx store.Tx) error {
		st := &pb.NodeStatus{State: pb.NodeStatus_STATE_READY, ChangedAt: timestamppb.New(d.cfg.Now())}
		cur := tx.GetNode(id.NodeID)
		if cur == nil && tx.GetRemovedNode(id.NodeID) != nil {
			return admit.Removed(id.NodeID)
		}
		if cur == nil {
			role := pb.NodeSpec_ROLE_WORKER
			if id.Role == ca.RoleManager {
				role = pb.NodeSpec_ROLE_MANAGER
			}
			return tx.CreateNode(&pb.Node{
				Id: id.NodeID, Role: role, Description: desc, Status: st,
				Spec: &pb.NodeSpec{Annotations: &pb.Annotations{}, DesiredRole: role, Availability: pb.NodeSpec_AVAILABILITY_ACTIVE},
			})
		}
		n := proto.Clone(cur).(*pb.Node)
		n.Status = st
		if desc != nil { // an agent that describes nothing keeps the old description
			n.Description = desc
		}
		return tx.UpdateNode(n)
	}
}

// nodeDown marks a node DOWN with reason unless it opened a new session
// meanwhile.
func (d *Dispatcher) nodeDown(t *term, nodeID, reason string) func(store.Tx) error {
	return func(tx store.Tx) error {
		if d.live(t, nodeID) {
			return nil
		}
		cur := tx.GetNode(nodeID)
		if cur == nil || cur.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN && cur.GetStatus().GetMessage() == reason {
			return nil
		}
		n := proto.Clone(cur).(*pb.Node)
		n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_DOWN, Message: reason, ChangedAt: timestamppb.New(d.cfg.Now())}
		return tx.UpdateNode(n)
	}
}

// remoteIP is the caller's IP, the node address when it names none.
func remoteIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return ""
	}
	return host
}
