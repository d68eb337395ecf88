package main

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

// editNetworks applies --network-rm then --network-add to a service spec,
// as Docker's service update does. The stored spec names networks by ID,
// so names given on the command line are resolved first. Changing the
// networks rolls the service's tasks like any change of what they run.
func editNetworks(ctx context.Context, c pb.ControlClient, spec *pb.ServiceSpec, add, rm []string) error {
	for _, r := range rm {
		id, err := networkID(ctx, c, r)
		if err != nil {
			return fmt.Errorf("--network-rm %s: %w", r, err)
		}
		n := len(spec.Networks)
		spec.Networks = slices.DeleteFunc(spec.Networks, func(a *pb.NetworkAttachment) bool {
			return a.GetTarget() == id || a.GetTarget() == r
		})
		if len(spec.Networks) == n {
			return fmt.Errorf("--network-rm %s: the service is not attached to network %s", r, r)
		}
	}
	for _, a := range add {
		att, err := flagparse.Network(a)
		if err != nil {
			return err
		}
		id, err := networkID(ctx, c, att.GetTarget())
		if err != nil {
			return fmt.Errorf("--network-add %s: %w", att.GetTarget(), err)
		}
		if slices.ContainsFunc(spec.Networks, func(n *pb.NetworkAttachment) bool { return n.GetTarget() == id }) {
			return fmt.Errorf("--network-add %s: the service is already attached to network %s", att.GetTarget(), att.GetTarget())
		}
		att.Target = id
		spec.Networks = append(spec.Networks, att)
	}
	return nil
}

// networkID resolves a network name, ID or ID prefix.
func networkID(ctx context.Context, c pb.ControlClient, ref string) (string, error) {
	resp, err := c.GetNetwork(ctx, &pb.GetNetworkRequest{NetworkId: ref})
	if status.Code(err) == codes.NotFound {
		return "", fmt.Errorf("network %s does not exist (see `berth network ls`)", ref)
	}
	if err != nil {
		return "", err
	}
	return resp.GetNetwork().GetId(), nil
}
