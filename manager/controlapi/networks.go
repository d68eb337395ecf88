package controlapi

import (
	"context"

	"google.golang.org/protobuf/proto"

	"berth/internal/ids"
	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// CreateNetwork stores a new overlay network.
func (s *Server) CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) (*pb.CreateNetworkResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*pb.NetworkSpec)
	if err := validate.NetworkSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	if spec.GetDriver() == "" {
		spec.Driver = "overlay"
	}
	n := &pb.Network{Id: ids.New(), Spec: spec, Subnet: spec.GetSubnet()}
	err := s.update(ctx, func(tx store.Tx) error {
		if err := tx.CreateNetwork(n); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { n = tx.GetNetwork(n.GetId()) })
	return &pb.CreateNetworkResponse{Network: n}, nil
}

// GetNetwork finds a network by ID, name or ID prefix.
func (s *Server) GetNetwork(ctx context.Context, req *pb.GetNetworkRequest) (*pb.GetNetworkResponse, error) {
	var n *pb.Network
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		n, err = resolve("network", req.GetNetworkId(), tx.GetNetwork, tx.FindNetworks)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetNetworkResponse{Network: n}, nil
}

// ListNetworks lists networks.
func (s *Server) ListNetworks(ctx context.Context, req *pb.ListNetworksRequest) (*pb.ListNetworksResponse, error) {
	if err := validate.Filters(req.GetFilters()); err != nil {
		return nil, toStatus(err)
	}
	var out []*pb.Network
	err := s.view(ctx, func(tx store.ReadTx) error {
		all, err := tx.FindNetworks(store.All)
		for _, n := range all {
			if matches(req.GetFilters(), n.GetId(), n.GetSpec().GetAnnotations()) {
				out = append(out, n)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.ListNetworksResponse{Networks: out}, nil
}

// RemoveNetwork removes a network no service uses.
func (s *Server) RemoveNetwork(ctx context.Context, req *pb.RemoveNetworkRequest) (*pb.RemoveNetworkResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		n, err := resolve("network", req.GetNetworkId(), tx.GetNetwork, tx.FindNetworks)
		if err != nil {
			return err
		}
		svcs, err := tx.FindServices(store.All)
		if err != nil {
			return err
		}
		for _, svc := range svcs {
			for _, a := range svc.GetSpec().GetNetworks() {
				if a.GetTarget() == n.GetId() {
					return precondition("network %s is used by service %s: remove the service or update it with --network-rm first", n.GetSpec().GetAnnotations().GetName(), svc.GetSpec().GetAnnotations().GetName())
				}
			}
		}
		return tx.DeleteNetwork(n.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveNetworkResponse{}, nil
}
