package controlapi

import (
	"context"

	"google.golang.org/protobuf/proto"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// redacted is the cluster as clients may see it: no CA key, tokens or keys.
func redacted(c *pb.Cluster) *pb.Cluster {
	c = proto.Clone(c).(*pb.Cluster)
	c.JoinTokens, c.GossipKey, c.GossipRotation = nil, nil, nil
	if c.RootCa != nil {
		c.RootCa.CaKey = nil
	}
	return c
}

func (s *Server) cluster(tx store.ReadTx) (*pb.Cluster, error) {
	c := tx.GetCluster(s.cfg.ClusterID)
	if c == nil {
		return nil, notFound("cluster", s.cfg.ClusterID)
	}
	return c, nil
}

// GetCluster shows the cluster without its secrets, and its managers.
func (s *Server) GetCluster(ctx context.Context, _ *pb.GetClusterRequest) (*pb.GetClusterResponse, error) {
	var c *pb.Cluster
	if err := s.view(ctx, func(tx store.ReadTx) (err error) { c, err = s.cluster(tx); return err }); err != nil {
		return nil, err
	}
	resp := &pb.GetClusterResponse{Cluster: redacted(c)}
	if m := s.cfg.Membership; m != nil {
		resp.Members, _ = m.Members()
		_, resp.LeaderAddr = m.Leader()
		resp.CommitIndex = m.AppliedIndex()
	}
	return resp, nil
}

// UpdateCluster changes cluster settings and rotates join tokens.
func (s *Server) UpdateCluster(ctx context.Context, req *pb.UpdateClusterRequest) (*pb.UpdateClusterResponse, error) {
	if req.GetSpec() != nil {
		if err := validate.ClusterSpec(req.GetSpec()); err != nil {
			return nil, toStatus(err)
		}
	}
	var out *pb.Cluster
	err := s.update(ctx, func(tx store.Tx) error {
		cur, err := s.cluster(tx)
		if err != nil {
			return err
		}
		if cur.GetMeta().GetVersion() != req.GetClusterVersion() {
			return store.ErrSequenceConflict
		}
		c := proto.Clone(cur).(*pb.Cluster)
		if req.GetSpec() != nil {
			c.Spec = proto.Clone(req.GetSpec()).(*pb.ClusterSpec)
		}
		if c.JoinTokens == nil {
			c.JoinTokens = &pb.JoinTokens{}
		}
		if req.GetRotateWorkerToken() {
			if c.JoinTokens.Worker, err = s.cfg.NewToken(); err != nil {
				return err
			}
		}
		if req.GetRotateManagerToken() {
			if c.JoinTokens.Manager, err = s.cfg.NewToken(); err != nil {
				return err
			}
		}
		if err := tx.UpdateCluster(c); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { out = tx.GetCluster(s.cfg.ClusterID) })
	return &pb.UpdateClusterResponse{Cluster: redacted(out)}, nil
}

// GetJoinToken returns the token for a role and the managers to join.
func (s *Server) GetJoinToken(ctx context.Context, req *pb.GetJoinTokenRequest) (*pb.GetJoinTokenResponse, error) {
	var c *pb.Cluster
	if err := s.view(ctx, func(tx store.ReadTx) (err error) { c, err = s.cluster(tx); return err }); err != nil {
		return nil, err
	}
	resp := &pb.GetJoinTokenResponse{Token: c.GetJoinTokens().GetWorker()}
	if req.GetRole() == pb.NodeSpec_ROLE_MANAGER {
		resp.Token = c.GetJoinTokens().GetManager()
	}
	if m := s.cfg.Membership; m != nil {
		members, _ := m.Members()
		for _, mem := range members {
			resp.ManagerAddrs = append(resp.ManagerAddrs, mem.GetAddr())
		}
	}
	return resp, nil
}
