package stack

import (
	"context"

	pb "berth/proto/berth/v1"
)

// Summary is one stack in the cluster.
type Summary struct {
	Name     string `json:"name"`
	Services int    `json:"services"`
	Networks int    `json:"networks"`
	Secrets  int    `json:"secrets"`
	Configs  int    `json:"configs"`
}

// List returns the stacks of the cluster, by name: every name found in a
// namespace label of a service, network, secret or config.
func List(ctx context.Context, api API) ([]Summary, error) {
	inAny := &pb.ListFilters{Labels: map[string]string{Namespace: ""}}
	by := map[string]*Summary{}
	get := func(a *pb.Annotations) *Summary {
		n := a.GetLabels()[Namespace]
		if by[n] == nil {
			by[n] = &Summary{Name: n}
		}
		return by[n]
	}
	svcs, err := listServices(ctx, api, inAny)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs {
		get(s.GetSpec().GetAnnotations()).Services++
	}
	nets, err := listNetworks(ctx, api, inAny)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		get(n.GetSpec().GetAnnotations()).Networks++
	}
	secs, err := listSecrets(ctx, api, inAny)
	if err != nil {
		return nil, err
	}
	for _, s := range secs {
		get(s.GetSpec().GetAnnotations()).Secrets++
	}
	cfgs, err := listConfigs(ctx, api, inAny)
	if err != nil {
		return nil, err
	}
	for _, c := range cfgs {
		get(c.GetSpec().GetAnnotations()).Configs++
	}
	out := make([]Summary, 0, len(by))
	for _, n := range sortedKeys(by) {
		out = append(out, *by[n])
	}
	return out, nil
}
