package stack

import (
	"math"
	"strconv"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

// deploy maps a service's deploy: section onto spec.
func (c *svcCtx) deploy(spec *pb.ServiceSpec) error {
	d := c.svc.Deploy
	if d == nil {
		return nil
	}
	for k, v := range d.Labels {
		spec.Annotations.Labels[k] = v
	}
	spec.Annotations.Labels[Namespace] = c.p.Name
	switch d.Mode {
	case "", "replicated":
		spec.Replicas = replicas(d.Replicas)
	case "global":
		if d.Replicas != nil {
			return c.errorf("deploy.replicas", "a global service runs one task per node; drop replicas or use mode: replicated")
		}
		spec.Mode = pb.ServiceMode_SERVICE_MODE_GLOBAL
	default:
		return c.errorf("deploy.mode", "mode %q is not supported; use replicated or global", d.Mode)
	}
	if spec.Replicas != nil && *spec.Replicas < 0 {
		return c.errorf("deploy.replicas", "%d is negative; use 0 or more", *spec.Replicas)
	}
	switch d.EndpointMode {
	case "", "vip":
	case "dnsrr":
		spec.Endpoint.Mode = pb.EndpointSpec_MODE_DNSRR
	default:
		return c.errorf("deploy.endpoint_mode", "%q is not an endpoint mode; use vip or dnsrr", d.EndpointMode)
	}
	var err error
	t := spec.Task
	if t.Resources, err = c.resources(d.Resources); err != nil {
		return err
	}
	if t.Restart, err = c.restart(d.RestartPolicy); err != nil {
		return err
	}
	if spec.Update, err = c.update("deploy.update_config", d.UpdateConfig); err != nil {
		return err
	}
	if spec.Rollback, err = c.update("deploy.rollback_config", d.RollbackConfig); err != nil {
		return err
	}
	t.Placement = placement(d.Placement)
	return nil
}

func (c *svcCtx) resources(r types.Resources) (*pb.Resources, error) {
	if r.Limits == nil && r.Reservations == nil {
		return nil, nil
	}
	out := &pb.Resources{}
	var err error
	if out.Limits, err = c.resourceSet("deploy.resources.limits", r.Limits); err != nil {
		return nil, err
	}
	if out.Reservations, err = c.resourceSet("deploy.resources.reservations", r.Reservations); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *svcCtx) resourceSet(key string, r *types.Resource) (*pb.ResourceSet, error) {
	if r == nil {
		return nil, nil
	}
	s := &pb.ResourceSet{NanoCpus: nanoCPUs(r.NanoCPUs.Value()), MemoryBytes: int64(r.MemoryBytes), Pids: r.Pids}
	switch {
	case s.NanoCpus < 0:
		return nil, c.errorf(key+".cpus", "negative; use a number of CPUs such as 0.5")
	case s.MemoryBytes < 0:
		return nil, c.errorf(key+".memory", "negative; use a size such as 64M")
	case s.Pids < 0:
		return nil, c.errorf(key+".pids", "negative; use a number of processes such as 100")
	}
	return s, nil
}

// nanoCPUs converts compose-go's float32 CPU count without its binary
// error: float32(0.1) is 0.10000000149, which would be 100000001 nano
// CPUs; its shortest decimal form is "0.1", which is 1e8.
func nanoCPUs(v float32) int64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return int64(math.Round(f * 1e9))
}

func (c *svcCtx) restart(r *types.RestartPolicy) (*pb.RestartPolicy, error) {
	if r == nil {
		return nil, nil
	}
	out := &pb.RestartPolicy{Delay: duration(r.Delay), Window: duration(r.Window)}
	switch r.Condition {
	case "", "any":
	case "on-failure":
		out.Condition = pb.RestartPolicy_CONDITION_ON_FAILURE
	case "none":
		out.Condition = pb.RestartPolicy_CONDITION_NONE
	default:
		return nil, c.errorf("deploy.restart_policy.condition", "%q is not a restart condition; use none, on-failure or any", r.Condition)
	}
	if r.MaxAttempts != nil {
		out.MaxAttempts = *r.MaxAttempts
	}
	return out, nil
}

// update maps update_config or rollback_config. Parallelism defaults to
// 1, as in Docker (berth's 0 means all at once).
func (c *svcCtx) update(key string, u *types.UpdateConfig) (*pb.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	out := &pb.UpdateConfig{Parallelism: 1, MaxFailureRatio: u.MaxFailureRatio}
	if u.Parallelism != nil {
		out.Parallelism = *u.Parallelism
	}
	if u.Delay != 0 {
		out.Delay = durationpb.New(time.Duration(u.Delay))
	}
	if u.Monitor != 0 {
		out.Monitor = durationpb.New(time.Duration(u.Monitor))
	}
	switch u.FailureAction {
	case "", "pause":
	case "continue":
		out.FailureAction = pb.UpdateConfig_FAILURE_ACTION_CONTINUE
	case "rollback":
		if key == "deploy.rollback_config" {
			return nil, c.errorf(key+".failure_action", "a rollback cannot roll back; use pause or continue")
		}
		out.FailureAction = pb.UpdateConfig_FAILURE_ACTION_ROLLBACK
	default:
		return nil, c.errorf(key+".failure_action", "%q is not a failure action; use pause, continue or rollback", u.FailureAction)
	}
	switch u.Order {
	case "", "stop-first":
	case "start-first":
		out.Order = pb.UpdateConfig_ORDER_START_FIRST
	default:
		return nil, c.errorf(key+".order", "%q is not an update order; use stop-first or start-first", u.Order)
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		return nil, c.errorf(key+".max_failure_ratio", "%g is not a ratio; use a value from 0 to 1", u.MaxFailureRatio)
	}
	return out, nil
}

func placement(p types.Placement) *pb.Placement {
	if len(p.Constraints) == 0 && len(p.Preferences) == 0 && p.MaxReplicas == 0 {
		return nil
	}
	out := &pb.Placement{Constraints: append([]string(nil), p.Constraints...), MaxReplicasPerNode: p.MaxReplicas}
	for _, pref := range p.Preferences {
		out.Preferences = append(out.Preferences, &pb.PlacementPreference{SpreadDescriptor: pref.Spread})
	}
	return out
}
