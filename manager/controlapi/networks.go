package controlapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/internal/ids"
	"berth/manager/validate"
	"berth/overlay/allocator"
	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// CreateNetwork stores a new overlay network with its subnet (the one asked
// for, or the next free one of the cluster pool) and VXLAN identifier.
func (s *Server) CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) (*pb.CreateNetworkResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*pb.NetworkSpec)
	if err := validate.NetworkSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	if spec.GetDriver() == "" {
		spec.Driver = "overlay"
	}
	if spec.GetAnnotations().GetName() == allocator.DefaultNetwork {
		return nil, invalid("invalid name: %q is the network of services that name none; pick another name", allocator.DefaultNetwork)
	}
	n := &pb.Network{Id: ids.New(), Spec: spec}
	err := s.st.Update(ctx, func(tx store.Tx) error { return allocator.CreateNetwork(tx, s.cfg.ClusterID, n) })
	if err != nil {
		return nil, networkStatus(err)
	}
	s.st.View(func(tx store.ReadTx) { n = tx.GetNetwork(n.GetId()) })
	s.cfg.Log.Info("network created", "network", n.GetId(), "name", spec.GetAnnotations().GetName(), "subnet", n.GetSubnet(), "vni", n.GetVni())
	return &pb.CreateNetworkResponse{Network: n}, nil
}

// networkStatus maps what allocating a network can fail with to a status.
func networkStatus(err error) error {
	var oe *ipam.OverlapError
	switch {
	case errors.As(err, &oe):
		return invalid("invalid subnet: %v; pick a subnet no other network uses", err)
	case errors.Is(err, ipam.ErrExhausted):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, allocator.ErrNoCluster):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrNameConflict):
		return status.Error(codes.AlreadyExists, fmt.Sprintf("%v: pick another name, or remove the other network first", err))
	}
	return toStatus(err)
}

// GetNetwork finds a network by ID, name or ID prefix.
func (s *Server) GetNetwork(ctx context.Context, req *pb.GetNetworkRequest) (*pb.GetNetworkResponse, error) {
	resp := &pb.GetNetworkResponse{}
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		resp.Network, err = resolve("network", req.GetNetworkId(), tx.GetNetwork, tx.FindNetworks)
		if err != nil {
			return err
		}
		resp.Attachments, err = attachmentsOn(tx, resp.Network.GetId())
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ListNetworks lists networks by ID, name and label, a page at a time.
func (s *Server) ListNetworks(ctx context.Context, req *pb.ListNetworksRequest) (*pb.ListNetworksResponse, error) {
	if err := firstErr(validate.Filters(req.GetFilters()), validate.PageToken(req.GetPageToken())); err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListNetworksResponse{}
	err := s.view(ctx, func(tx store.ReadTx) error {
		all, err := tx.FindNetworks(store.All)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(all, func(n *pb.Network) bool {
			return !matches(req.GetFilters(), n.GetId(), n.GetSpec().GetAnnotations())
		})
		resp.Networks, resp.NextPageToken = page(all, (*pb.Network).GetId, req.GetPageToken(), pageBudget, same[*pb.Network])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// RemoveNetwork removes a network no service uses.
func (s *Server) RemoveNetwork(ctx context.Context, req *pb.RemoveNetworkRequest) (*pb.RemoveNetworkResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		n, err := resolve("network", req.GetNetworkId(), tx.GetNetwork, tx.FindNetworks)
		if err != nil {
			return err
		}
		name := n.GetSpec().GetAnnotations().GetName()
		if name == allocator.DefaultNetwork {
			return precondition("network %s is the network of services that name none; it cannot be removed", name)
		}
		users, err := networkUsers(tx, n.GetId())
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return precondition("network %s is used by %s %s: remove %s first (berth service rm)",
				name, plural(len(users), "service", "services"), strings.Join(users, ", "), plural(len(users), "it", "them"))
		}
		atts, err := attachmentsOn(tx, n.GetId())
		if err != nil {
			return err
		}
		if len(atts) > 0 {
			return precondition("network %s has standalone %s attached: %s; stop %s first on %s (berth-agent stop NAME)",
				name, plural(len(atts), "container", "containers"), containerList(tx, atts),
				plural(len(atts), "it", "them"), plural(len(atts), "its node", "their nodes"))
		}
		return tx.DeleteNetwork(n.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveNetworkResponse{}, nil
}

// networkUsers names the services attached to network id, sorted.
func networkUsers(tx store.ReadTx, id string) ([]string, error) {
	svcs, err := tx.FindServices(store.All)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, svc := range svcs {
		for _, a := range svc.GetSpec().GetNetworks() {
			if a.GetTarget() == id {
				users = append(users, svc.GetSpec().GetAnnotations().GetName())
				break
			}
		}
	}
	sort.Strings(users)
	return users, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
