package stack

import (
	"context"

	pb "berth/proto/berth/v1"
)

// pages gathers every page of a list call: managers page their answers
// and set a token for the rest.
func pages[T any](ctx context.Context, list func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var out []T
	token := ""
	for {
		items, next, err := list(ctx, token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		token = next
	}
}

func listServices(ctx context.Context, api API, f *pb.ListFilters) ([]*pb.Service, error) {
	return pages(ctx, func(ctx context.Context, token string) ([]*pb.Service, string, error) {
		r, err := api.ListServices(ctx, &pb.ListServicesRequest{Filters: f, PageToken: token})
		return r.GetServices(), r.GetNextPageToken(), err
	})
}

func listNetworks(ctx context.Context, api API, f *pb.ListFilters) ([]*pb.Network, error) {
	return pages(ctx, func(ctx context.Context, token string) ([]*pb.Network, string, error) {
		r, err := api.ListNetworks(ctx, &pb.ListNetworksRequest{Filters: f, PageToken: token})
		return r.GetNetworks(), r.GetNextPageToken(), err
	})
}

func listSecrets(ctx context.Context, api API, f *pb.ListFilters) ([]*pb.Secret, error) {
	return pages(ctx, func(ctx context.Context, token string) ([]*pb.Secret, string, error) {
		r, err := api.ListSecrets(ctx, &pb.ListSecretsRequest{Filters: f, PageToken: token})
		return r.GetSecrets(), r.GetNextPageToken(), err
	})
}

func listTasks(ctx context.Context, api API, services []string) ([]*pb.Task, error) {
	return pages(ctx, func(ctx context.Context, token string) ([]*pb.Task, string, error) {
		r, err := api.ListTasks(ctx, &pb.ListTasksRequest{ServiceIds: services, PageToken: token})
		return r.GetTasks(), r.GetNextPageToken(), err
	})
}

func listConfigs(ctx context.Context, api API, f *pb.ListFilters) ([]*pb.Config, error) {
	return pages(ctx, func(ctx context.Context, token string) ([]*pb.Config, string, error) {
		r, err := api.ListConfigs(ctx, &pb.ListConfigsRequest{Filters: f, PageToken: token})
		return r.GetConfigs(), r.GetNextPageToken(), err
	})
}
