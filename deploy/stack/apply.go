package stack

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	pb "berth/proto/berth/v1"
)

// API is the part of the Control API a stack needs. The CLI adapts its
// gRPC client to it, so this package speaks no gRPC.
type API interface {
	ListServices(context.Context, *pb.ListServicesRequest) (*pb.ListServicesResponse, error)
	CreateService(context.Context, *pb.CreateServiceRequest) (*pb.CreateServiceResponse, error)
	UpdateService(context.Context, *pb.UpdateServiceRequest) (*pb.UpdateServiceResponse, error)
	RemoveService(context.Context, *pb.RemoveServiceRequest) (*pb.RemoveServiceResponse, error)
	ListNetworks(context.Context, *pb.ListNetworksRequest) (*pb.ListNetworksResponse, error)
	CreateNetwork(context.Context, *pb.CreateNetworkRequest) (*pb.CreateNetworkResponse, error)
	RemoveNetwork(context.Context, *pb.RemoveNetworkRequest) (*pb.RemoveNetworkResponse, error)
	ListSecrets(context.Context, *pb.ListSecretsRequest) (*pb.ListSecretsResponse, error)
	CreateSecret(context.Context, *pb.CreateSecretRequest) (*pb.CreateSecretResponse, error)
	RemoveSecret(context.Context, *pb.RemoveSecretRequest) (*pb.RemoveSecretResponse, error)
	ListConfigs(context.Context, *pb.ListConfigsRequest) (*pb.ListConfigsResponse, error)
	CreateConfig(context.Context, *pb.CreateConfigRequest) (*pb.CreateConfigResponse, error)
	RemoveConfig(context.Context, *pb.RemoveConfigRequest) (*pb.RemoveConfigResponse, error)
	ListTasks(context.Context, *pb.ListTasksRequest) (*pb.ListTasksResponse, error)
}

// Result says what a deploy did to the stack's services.
type Result struct {
	// Created and Updated are the services a deploy started tasks for;
	// a caller that waits follows them.
	Created, Updated []*pb.Service
	// Unchanged services were left alone: no update, no task restarted.
	Unchanged []string
	// Removed are the services --prune took away.
	Removed []string
}

// PartialError is a deploy that stopped part-way: Done were applied, the
// step that failed and the ones after it were not. Deploying the same
// files again finishes the job (it applies only what differs).
type PartialError struct {
	Done, NotDone []string
	Err           error
}

func (e *PartialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n", e.Err)
	if len(e.Done) > 0 {
		fmt.Fprintf(&b, "applied: %s\n", strings.Join(e.Done, "; "))
	}
	fmt.Fprintf(&b, "not applied: %s\n", strings.Join(e.NotDone, "; "))
	b.WriteString("fix the cause and run the same deploy again to finish it")
	return b.String()
}

func (e *PartialError) Unwrap() error { return e.Err }

// step is one change of a deploy.
type step struct {
	what string
	do   func(context.Context) error
}

// Deploy brings the cluster's stack in line with s: it creates what is
// missing, updates the services whose spec differs (a rolling update
// under their update_config), leaves the others untouched and, with
// prune, removes the stack's services s no longer has. Everything that
// can be checked is checked before the first change.
func Deploy(ctx context.Context, api API, s *Stack, prune bool, report func(string)) (*Result, error) {
	cur, err := current(ctx, api, s.Name)
	if err != nil {
		return nil, err
	}
	if err := checkExternal(ctx, api, s); err != nil {
		return nil, err
	}
	if err := checkClashes(ctx, api, s, cur); err != nil {
		return nil, err
	}
	ids, err := resolver(ctx, api)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	steps := planObjects(api, s, cur, report)
	steps = append(steps, planServices(api, s, cur, ids, prune, res, report)...)
	for i, st := range steps {
		if err := st.do(ctx); err != nil {
			return res, &PartialError{Done: whats(steps[:i]), NotDone: whats(steps[i:]), Err: fmt.Errorf("%s: %w", st.what, err)}
		}
	}
	return res, nil
}

func whats(steps []step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.what
	}
	return out
}

// objects are a stack's objects in the cluster, by name.
type objects struct {
	services map[string]*pb.Service
	networks map[string]*pb.Network
	secrets  map[string]*pb.Secret
	configs  map[string]*pb.Config
}

func byNamespace(name string) *pb.ListFilters {
	return &pb.ListFilters{Labels: map[string]string{Namespace: name}}
}

// current lists the objects labelled with the stack's name.
func current(ctx context.Context, api API, name string) (*objects, error) {
	o := &objects{services: map[string]*pb.Service{}, networks: map[string]*pb.Network{}, secrets: map[string]*pb.Secret{}, configs: map[string]*pb.Config{}}
	svcs, err := listServices(ctx, api, byNamespace(name))
	if err != nil {
		return nil, fmt.Errorf("list the stack's services: %w", err)
	}
	for _, s := range svcs {
		o.services[s.GetSpec().GetAnnotations().GetName()] = s
	}
	nets, err := listNetworks(ctx, api, byNamespace(name))
	if err != nil {
		return nil, fmt.Errorf("list the stack's networks: %w", err)
	}
	for _, n := range nets {
		o.networks[n.GetSpec().GetAnnotations().GetName()] = n
	}
	secs, err := listSecrets(ctx, api, byNamespace(name))
	if err != nil {
		return nil, fmt.Errorf("list the stack's secrets: %w", err)
	}
	for _, s := range secs {
		o.secrets[s.GetSpec().GetAnnotations().GetName()] = s
	}
	cfgs, err := listConfigs(ctx, api, byNamespace(name))
	if err != nil {
		return nil, fmt.Errorf("list the stack's configs: %w", err)
	}
	for _, c := range cfgs {
		o.configs[c.GetSpec().GetAnnotations().GetName()] = c
	}
	return o, nil
}

// checkExternal fails unless every external object exists.
func checkExternal(ctx context.Context, api API, s *Stack) error {
	for _, n := range s.ExternalNetworks {
		got, err := listNetworks(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("network %q is external but does not exist; create it with `berth network create %s`", n, n)
		}
	}
	for _, n := range s.ExternalSecrets {
		got, err := listSecrets(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("secret %q is external but does not exist; create it with `berth secret create %s FILE`", n, n)
		}
	}
	for _, n := range s.ExternalConfigs {
		got, err := listConfigs(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("config %q is external but does not exist; create it with `berth config create %s FILE`", n, n)
		}
	}
	return nil
}

// checkClashes fails when a name the stack would create belongs to an
// object outside the stack: the deploy would fail half-way on it.
func checkClashes(ctx context.Context, api API, s *Stack, cur *objects) error {
	for _, svc := range s.Services {
		n := svc.GetAnnotations().GetName()
		if cur.services[n] != nil {
			continue
		}
		got, err := listServices(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) > 0 {
			return fmt.Errorf("service %s exists and is not part of stack %s; remove or rename it first", n, s.Name)
		}
	}
	for _, nw := range s.Networks {
		n := nw.GetAnnotations().GetName()
		if cur.networks[n] != nil {
			continue
		}
		got, err := listNetworks(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) > 0 {
			return fmt.Errorf("network %s exists and is not part of stack %s; remove it, or declare it external: true", n, s.Name)
		}
	}
	for _, sec := range s.Secrets {
		n := sec.GetAnnotations().GetName()
		if cur.secrets[n] != nil {
			continue
		}
		got, err := listSecrets(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) > 0 {
			return fmt.Errorf("secret %s exists and is not part of stack %s; remove it, or declare it external: true", n, s.Name)
		}
	}
	return checkConfigs(ctx, api, s, cur)
}

// checkConfigs fails on a config name outside the stack, and on a config
// of the stack whose content the files change: managers cannot change a
// config in place (nor Swarm's), and its tasks would keep the old one.
func checkConfigs(ctx context.Context, api API, s *Stack, cur *objects) error {
	for _, cfg := range s.Configs {
		n := cfg.GetAnnotations().GetName()
		if old := cur.configs[n]; old != nil {
			if !bytes.Equal(old.GetSpec().GetData(), cfg.GetData()) {
				return fmt.Errorf("config %s: the files change its content, and a config cannot change; give it a new name (name: %s_v2 under its key)", n, n)
			}
			continue
		}
		got, err := listConfigs(ctx, api, &pb.ListFilters{Names: []string{n}})
		if err != nil {
			return err
		}
		if len(got) > 0 {
			return fmt.Errorf("config %s exists and is not part of stack %s; remove it, or declare it external: true", n, s.Name)
		}
	}
	return nil
}

// planObjects creates the networks, secrets and configs the stack lacks.
// One that exists is kept as it is: managers cannot change them in place
// (as in Swarm, a changed secret or config needs a new name).
func planObjects(api API, s *Stack, cur *objects, report func(string)) []step {
	var steps []step
	for _, n := range s.Networks {
		name := n.GetAnnotations().GetName()
		if cur.networks[name] != nil {
			continue
		}
		steps = append(steps, step{"create network " + name, func(ctx context.Context) error {
			if _, err := api.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: n}); err != nil {
				return err
			}
			report("Created network " + name)
			return nil
		}})
	}
	for _, sec := range s.Secrets {
		name := sec.GetAnnotations().GetName()
		if cur.secrets[name] != nil {
			// Managers hold no digest of a secret to compare with.
			report("Kept secret " + name + " as it is (to change a secret, give it a new name)")
			continue
		}
		steps = append(steps, step{"create secret " + name, func(ctx context.Context) error {
			if _, err := api.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: sec}); err != nil {
				return err
			}
			report("Created secret " + name)
			return nil
		}})
	}
	for _, cfg := range s.Configs {
		name := cfg.GetAnnotations().GetName()
		if cur.configs[name] != nil {
			continue
		}
		steps = append(steps, step{"create config " + name, func(ctx context.Context) error {
			if _, err := api.CreateConfig(ctx, &pb.CreateConfigRequest{Spec: cfg}); err != nil {
				return err
			}
			report("Created config " + name)
			return nil
		}})
	}
	return steps
}
