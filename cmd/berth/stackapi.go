package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/deploy/stack"
	"berth/manager/validate"
	pb "berth/proto/berth/v1"
)

// stackAPI adapts a Control client to stack.API (the same calls without
// gRPC call options).
type stackAPI struct{ c pb.ControlClient }

var _ stack.API = stackAPI{}

func (a stackAPI) ListServices(ctx context.Context, r *pb.ListServicesRequest) (*pb.ListServicesResponse, error) {
	return plain(a.c.ListServices(ctx, r))
}

func (a stackAPI) CreateService(ctx context.Context, r *pb.CreateServiceRequest) (*pb.CreateServiceResponse, error) {
	return plain(a.c.CreateService(ctx, r))
}

func (a stackAPI) UpdateService(ctx context.Context, r *pb.UpdateServiceRequest) (*pb.UpdateServiceResponse, error) {
	return plain(a.c.UpdateService(ctx, r))
}

func (a stackAPI) RemoveService(ctx context.Context, r *pb.RemoveServiceRequest) (*pb.RemoveServiceResponse, error) {
	return plain(a.c.RemoveService(ctx, r))
}

func (a stackAPI) ListNetworks(ctx context.Context, r *pb.ListNetworksRequest) (*pb.ListNetworksResponse, error) {
	return plain(a.c.ListNetworks(ctx, r))
}

func (a stackAPI) CreateNetwork(ctx context.Context, r *pb.CreateNetworkRequest) (*pb.CreateNetworkResponse, error) {
	return plain(a.c.CreateNetwork(ctx, r))
}

func (a stackAPI) RemoveNetwork(ctx context.Context, r *pb.RemoveNetworkRequest) (*pb.RemoveNetworkResponse, error) {
	return plain(a.c.RemoveNetwork(ctx, r))
}

func (a stackAPI) ListSecrets(ctx context.Context, r *pb.ListSecretsRequest) (*pb.ListSecretsResponse, error) {
	return plain(a.c.ListSecrets(ctx, r))
}

func (a stackAPI) CreateSecret(ctx context.Context, r *pb.CreateSecretRequest) (*pb.CreateSecretResponse, error) {
	return plain(a.c.CreateSecret(ctx, r))
}

func (a stackAPI) RemoveSecret(ctx context.Context, r *pb.RemoveSecretRequest) (*pb.RemoveSecretResponse, error) {
	return plain(a.c.RemoveSecret(ctx, r))
}

func (a stackAPI) ListConfigs(ctx context.Context, r *pb.ListConfigsRequest) (*pb.ListConfigsResponse, error) {
	return plain(a.c.ListConfigs(ctx, r))
}

func (a stackAPI) CreateConfig(ctx context.Context, r *pb.CreateConfigRequest) (*pb.CreateConfigResponse, error) {
	return plain(a.c.CreateConfig(ctx, r))
}

func (a stackAPI) RemoveConfig(ctx context.Context, r *pb.RemoveConfigRequest) (*pb.RemoveConfigResponse, error) {
	return plain(a.c.RemoveConfig(ctx, r))
}

func (a stackAPI) ListTasks(ctx context.Context, r *pb.ListTasksRequest) (*pb.ListTasksResponse, error) {
	return plain(a.c.ListTasks(ctx, r))
}

// plain drops gRPC's "rpc error: code = ... desc =" from an error, keeping
// its status for callers that look for a code.
func plain[T any](resp T, err error) (T, error) {
	if st, ok := status.FromError(err); ok && err != nil {
		return resp, statusErr{st}
	}
	return resp, err
}

// statusErr is a gRPC status whose text is its message alone.
type statusErr struct{ st *status.Status }

func (e statusErr) Error() string              { return e.st.Message() }
func (e statusErr) GRPCStatus() *status.Status { return e.st }

// checkStack runs the managers' own checks on every object of s before
// anything is sent, so a file they would refuse changes nothing.
func checkStack(s *stack.Stack) error {
	var all []*pb.Service
	for _, spec := range s.Services {
		name := spec.GetAnnotations().GetName()
		if err := validate.ServiceSpec(proto.Clone(spec).(*pb.ServiceSpec)); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		if err := validate.PortConflict(name, spec, all); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		all = append(all, &pb.Service{Id: name, Spec: spec})
	}
	for _, n := range s.Networks {
		if err := validate.NetworkSpec(n); err != nil {
			return fmt.Errorf("network %s: %w", n.GetAnnotations().GetName(), err)
		}
	}
	for _, sec := range s.Secrets {
		if err := validate.SecretSpec(sec); err != nil {
			return fmt.Errorf("secret %s: %w", sec.GetAnnotations().GetName(), err)
		}
	}
	for _, cfg := range s.Configs {
		if err := validate.ConfigSpec(cfg); err != nil {
			return fmt.Errorf("config %s: %w", cfg.GetAnnotations().GetName(), err)
		}
	}
	return nil
}
