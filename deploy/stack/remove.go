package stack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	pb "berth/proto/berth/v1"
)

// Remove deletes what stack name created: its services, then, once their
// tasks are gone, its networks, secrets and configs. External objects carry no
// stack label and are never touched. It returns false when the cluster
// has nothing of the stack. Waiting for tasks polls every poll until ctx
// ends; then the networks and secrets are kept and the error names the
// tasks still there.
func Remove(ctx context.Context, api API, name string, poll time.Duration, report func(string)) (bool, error) {
	cur, err := current(ctx, api, name)
	if err != nil {
		return false, err
	}
	if len(cur.services)+len(cur.networks)+len(cur.secrets)+len(cur.configs) == 0 {
		return false, nil
	}
	var errs []error
	var ids []string
	for _, n := range sortedKeys(cur.services) {
		svc := cur.services[n]
		if _, err := api.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: svc.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove service %s: %w", n, err))
			continue
		}
		ids = append(ids, svc.GetId())
		report("Removed service " + n)
	}
	if err := waitTasksGone(ctx, api, ids, poll); err != nil {
		return true, errors.Join(append(errs, err)...)
	}
	for _, n := range sortedKeys(cur.networks) {
		if _, err := api.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: cur.networks[n].GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n, err))
			continue
		}
		report("Removed network " + n)
	}
	for _, n := range sortedKeys(cur.secrets) {
		if _, err := api.RemoveSecret(ctx, &pb.RemoveSecretRequest{SecretId: cur.secrets[n].GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", n, err))
			continue
		}
		report("Removed secret " + n)
	}
	for _, n := range sortedKeys(cur.configs) {
		if _, err := api.RemoveConfig(ctx, &pb.RemoveConfigRequest{ConfigId: cur.configs[n].GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove config %s: %w", n, err))
			continue
		}
		report("Removed config " + n)
	}
	return true, errors.Join(errs...)
}

// waitTasksGone returns once the services have no tasks left.
func waitTasksGone(ctx context.Context, api API, services []string, poll time.Duration) error {
	if len(services) == 0 {
		return nil
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		tasks, err := listTasks(ctx, api, services)
		if err == nil && len(tasks) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s; networks, secrets and configs kept: run `berth stack rm` again once the tasks are gone", stillThere(tasks, err))
		case <-tick.C:
		}
	}
}

func stillThere(tasks []*pb.Task, err error) string {
	if err != nil {
		return fmt.Sprintf("list the stack's tasks: %v", err)
	}
	var where []string
	for _, t := range tasks {
		where = append(where, fmt.Sprintf("%s (%s on node %s)", t.GetId(), strings.ToLower(strings.TrimPrefix(t.GetStatus().GetState().String(), "TASK_STATE_")), t.GetNodeId()))
	}
	sort.Strings(where)
	return fmt.Sprintf("%d task(s) not gone yet: %s", len(where), strings.Join(where, ", "))
}
