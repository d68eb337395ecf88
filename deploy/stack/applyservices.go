package stack

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// ids maps the names of the cluster's networks and secrets to their IDs,
// as managers store references.
type ids struct {
	networks, secrets, configs map[string]string
}

func resolver(ctx context.Context, api API) (*ids, error) {
	r := &ids{networks: map[string]string{}, secrets: map[string]string{}, configs: map[string]string{}}
	nets, err := listNetworks(ctx, api, nil)
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets {
		r.networks[n.GetSpec().GetAnnotations().GetName()] = n.GetId()
	}
	secs, err := listSecrets(ctx, api, nil)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secs {
		r.secrets[s.GetSpec().GetAnnotations().GetName()] = s.GetId()
	}
	cfgs, err := listConfigs(ctx, api, nil)
	if err != nil {
		return nil, fmt.Errorf("list configs: %w", err)
	}
	for _, c := range cfgs {
		r.configs[c.GetSpec().GetAnnotations().GetName()] = c.GetId()
	}
	return r, nil
}

// desired is spec as managers would store it over cur (nil for a new
// service): references by ID where the object exists; the replica count,
// forced-update counter and registry credentials of cur kept where the
// file says nothing of them (a file has no replicas for a scaled service
// to keep its scale, no --force, no credentials).
func desired(spec *pb.ServiceSpec, cur *pb.Service, r *ids) *pb.ServiceSpec {
	out := proto.Clone(spec).(*pb.ServiceSpec)
	for _, n := range out.GetNetworks() {
		if id, ok := r.networks[n.GetTarget()]; ok {
			n.Target = id
		}
	}
	for _, ref := range out.GetTask().GetContainer().GetSecrets() {
		ref.SecretId = r.secrets[ref.GetSecretName()]
	}
	for _, ref := range out.GetTask().GetContainer().GetConfigs() {
		ref.ConfigId = r.configs[ref.GetConfigName()]
	}
	if cur == nil {
		return out
	}
	c := cur.GetSpec()
	if out.Replicas == nil && out.GetMode() == pb.ServiceMode_SERVICE_MODE_REPLICATED && c.GetMode() == out.GetMode() {
		out.Replicas = c.Replicas
	}
	out.Task.ForceUpdate = c.GetTask().GetForceUpdate()
	if ra := c.GetTask().GetContainer().GetRegistryAuth(); ra != nil {
		out.Task.Container.RegistryAuth = proto.Clone(ra).(*pb.RegistryAuth)
	}
	return out
}

// planServices creates the services the cluster lacks, updates those
// whose spec differs, and with prune removes the stack's services s no
// longer has. An unchanged service gets no call at all.
func planServices(api API, s *Stack, cur *objects, r *ids, prune bool, res *Result, report func(string)) []step {
	var steps []step
	want := map[string]bool{}
	for _, spec := range s.Services {
		name := spec.GetAnnotations().GetName()
		want[name] = true
		old := cur.services[name]
		next := desired(spec, old, r)
		switch {
		case old == nil:
			steps = append(steps, step{"create service " + name, func(ctx context.Context) error {
				resp, err := api.CreateService(ctx, &pb.CreateServiceRequest{Spec: next})
				if err != nil {
					return err
				}
				res.Created = append(res.Created, resp.GetService())
				report("Created service " + name)
				return nil
			}})
		case !proto.Equal(next, old.GetSpec()):
			steps = append(steps, step{"update service " + name, func(ctx context.Context) error {
				resp, err := api.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: old.GetId(), ServiceVersion: old.GetMeta().GetVersion(), Spec: next})
				if err != nil {
					return err
				}
				res.Updated = append(res.Updated, resp.GetService())
				report("Updated service " + name)
				return nil
			}})
		default:
			res.Unchanged = append(res.Unchanged, name)
		}
	}
	if !prune {
		return steps
	}
	for _, name := range sortedKeys(cur.services) {
		if want[name] {
			continue
		}
		old := cur.services[name]
		steps = append(steps, step{"remove service " + name, func(ctx context.Context) error {
			if _, err := api.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: old.GetId()}); err != nil {
				return err
			}
			res.Removed = append(res.Removed, name)
			report("Removed service " + name)
			return nil
		}})
	}
	return steps
}
