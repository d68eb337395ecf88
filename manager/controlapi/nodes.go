package controlapi

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// getNode finds a node by ID, hostname or unique ID prefix.
func getNode(tx store.ReadTx, ref string) (*pb.Node, error) {
	return resolve("node", ref, tx.GetNode, func(by store.By) ([]*pb.Node, error) {
		if by == store.ByName(ref) {
			return tx.FindNodes(store.ByHostname(ref))
		}
		return tx.FindNodes(by)
	})
}

// GetNode finds a node by ID, hostname or ID prefix.
func (s *Server) GetNode(ctx context.Context, req *pb.GetNodeRequest) (*pb.GetNodeResponse, error) {
	var n *pb.Node
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		n, err = getNode(tx, req.GetNodeId())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetNodeResponse{Node: s.withManagerStatus(n)}, nil
}

// ListNodes lists nodes by ID, name, label and role, a page at a time,
// with managers' Raft status filled in.
func (s *Server) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	if err := firstErr(validate.Filters(req.GetFilters()), validate.ListRoles(req.GetRoles()), validate.PageToken(req.GetPageToken())); err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListNodesResponse{}
	err := s.view(ctx, func(tx store.ReadTx) error {
		all, err := tx.FindNodes(store.All)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(all, func(n *pb.Node) bool {
			a := n.GetSpec().GetAnnotations()
			if a.GetName() == "" {
				a = &pb.Annotations{Name: n.GetDescription().GetHostname(), Labels: a.GetLabels()}
			}
			return !matches(req.GetFilters(), n.GetId(), a) ||
				len(req.GetRoles()) > 0 && !slices.Contains(req.GetRoles(), n.GetRole())
		})
		resp.Nodes, resp.NextPageToken = page(all, (*pb.Node).GetId, req.GetPageToken(), pageBudget, s.withManagerStatus)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// withManagerStatus returns n with its live Raft status, if it is a member.
func (s *Server) withManagerStatus(n *pb.Node) *pb.Node {
	if s.cfg.Membership == nil {
		return n
	}
	members, err := s.cfg.Membership.Members()
	if err != nil {
		return n
	}
	for _, m := range members {
		if m.GetNodeId() == n.GetId() {
			n = proto.Clone(n).(*pb.Node)
			n.ManagerStatus = &pb.ManagerStatus{Addr: m.GetAddr(), Leader: m.GetLeader(), Reachability: m.GetReachability()}
			return n
		}
	}
	return n
}

// UpdateNode changes a node's availability, labels or role. Demoting a
// manager takes its vote away (refused when it would lose quorum or the
// last manager). Promoting a ready worker records the wish: its agent
// learns it in its session, starts a manager and joins Raft, and the
// node's role turns manager once that manager registers.
func (s *Server) UpdateNode(ctx context.Context, req *pb.UpdateNodeRequest) (*pb.UpdateNodeResponse, error) {
	spec := req.GetSpec()
	if err := validate.NodeSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	var cur *pb.Node
	if err := s.view(ctx, func(tx store.ReadTx) (err error) { cur, err = getNode(tx, req.GetNodeId()); return err }); err != nil {
		return nil, err
	}
	if cur.GetMeta().GetVersion() != req.GetNodeVersion() {
		return nil, toStatus(store.ErrSequenceConflict)
	}
	demote, role, err := s.checkRole(cur, spec.GetDesiredRole())
	if err != nil {
		return nil, err
	}
	// The role is written before the vote is taken away: once a manager
	// (the leader, say) is out of Raft it may no longer be able to write.
	if err := s.writeNode(ctx, cur.GetId(), spec, role); err != nil {
		return nil, err
	}
	if demote {
		if err := s.cfg.Membership.RemoveServer(ctx, cur.GetId()); err != nil {
			if rerr := s.writeNode(ctx, cur.GetId(), cur.GetSpec(), cur.GetRole()); rerr != nil {
				s.cfg.Log.Error("demotion refused but the node's role could not be restored", "node", cur.GetId(), "err", rerr)
			}
			return nil, precondition("cannot demote %s: %v", hostnameOr(cur), err)
		}
	}
	var out *pb.Node
	s.st.View(func(tx store.ReadTx) { out = tx.GetNode(cur.GetId()) })
	return &pb.UpdateNodeResponse{Node: out}, nil
}

// checkRole says whether giving n the role wanted takes a Raft vote away
// and which role n holds meanwhile: a promoted worker stays a worker until
// the manager its agent starts registers. It refuses to promote a node
// whose agent is not there to carry it out.
func (s *Server) checkRole(n *pb.Node, want pb.NodeSpec_Role) (demote bool, role pb.NodeSpec_Role, err error) {
	if s.cfg.Membership == nil {
		return false, want, nil
	}
	isMember := false
	if members, err := s.cfg.Membership.Members(); err == nil {
		for _, m := range members {
			isMember = isMember || m.GetNodeId() == n.GetId()
		}
	}
	switch {
	case want == pb.NodeSpec_ROLE_WORKER && isMember:
		return true, want, nil
	case want == pb.NodeSpec_ROLE_MANAGER && !isMember:
		if st := n.GetStatus().GetState(); st != pb.NodeStatus_STATE_READY {
			return false, 0, precondition("cannot promote %s: it is %s, and only a ready node's agent can start a manager; start its berth-agent, wait until `berth node ls` shows it ready, then promote it", hostnameOr(n), lower(st.String(), "STATE_"))
		}
		if s.cfg.CanPromote != nil {
			if err := s.cfg.CanPromote(); err != nil {
				return false, 0, precondition("cannot promote %s: %v", hostnameOr(n), err)
			}
		}
		return false, n.GetRole(), nil
	}
	return false, want, nil
}

// writeNode sets a node's spec and role.
func (s *Server) writeNode(ctx context.Context, id string, spec *pb.NodeSpec, role pb.NodeSpec_Role) error {
	return s.update(ctx, func(tx store.Tx) error {
		n := tx.GetNode(id)
		if n == nil {
			return notFound("node", id)
		}
		n = proto.Clone(n).(*pb.Node)
		n.Spec = proto.Clone(spec).(*pb.NodeSpec)
		n.Role = role
		return tx.UpdateNode(n)
	})
}

// RemoveNode removes a node from the cluster: only a down node (or any
// with force), and never a manager that still votes.
func (s *Server) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		n, err := getNode(tx, req.GetNodeId())
		if err != nil {
			return err
		}
		if s.cfg.Membership != nil {
			members, _ := s.cfg.Membership.Members()
			for _, m := range members {
				if m.GetNodeId() == n.GetId() {
					return precondition("node %s is a manager: demote it first (berth node demote %s)", hostnameOr(n), hostnameOr(n))
				}
			}
		}
		if st := n.GetStatus().GetState(); st != pb.NodeStatus_STATE_DOWN && !req.GetForce() {
			return precondition("node %s is %s, not down: stop its agent first, or use --force", hostnameOr(n), lower(st.String(), "STATE_"))
		}
		return tx.DeleteNode(n.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveNodeResponse{}, nil
}

func hostnameOr(n *pb.Node) string {
	if h := n.GetDescription().GetHostname(); h != "" {
		return h
	}
	return n.GetId()
}

func lower(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }
