package scheduler

import (
	"fmt"
	"sort"
	"testing"

	pb "berth/proto/berth/v1"
)

const cpu = int64(1e9) // one core in nano CPUs

const gib = int64(1 << 30)

// nodeOpt changes a test node.
type nodeOpt func(*pb.Node)

// node builds a ready, active worker with 4 CPUs and 8 GiB.
func node(id string, opts ...nodeOpt) *pb.Node {
	n := &pb.Node{
		Id:     id,
		Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{Labels: map[string]string{}}},
		Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY},
		Description: &pb.NodeDescription{
			Hostname:  "host-" + id,
			Platform:  &pb.Platform{Os: "linux", Architecture: "amd64"},
			Resources: &pb.ResourceSet{NanoCpus: 4 * cpu, MemoryBytes: 8 * gib},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withLabel(k, v string) nodeOpt {
	return func(n *pb.Node) { n.Spec.Annotations.Labels[k] = v }
}

func withState(s pb.NodeStatus_State) nodeOpt { return func(n *pb.Node) { n.Status.State = s } }

func withAvail(a pb.NodeSpec_Availability) nodeOpt {
	return func(n *pb.Node) { n.Spec.Availability = a }
}

func withResources(cpus, mem int64) nodeOpt {
	return func(n *pb.Node) { n.Description.Resources = &pb.ResourceSet{NanoCpus: cpus, MemoryBytes: mem} }
}

func asManager(n *pb.Node) { n.Role = pb.NodeSpec_ROLE_MANAGER }

// taskOpt changes a test task.
type taskOpt func(*pb.Task)

// task builds a pending task of service svc in slot.
func task(svc string, slot uint64, opts ...taskOpt) *pb.Task {
	t := &pb.Task{
		Id:           fmt.Sprintf("%s.%d", svc, slot),
		ServiceId:    svc,
		Slot:         slot,
		Spec:         &pb.TaskSpec{Placement: &pb.Placement{}, Resources: &pb.Resources{}},
		DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Status:       &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// tasks builds n pending tasks of svc in slots 1..n.
func tasks(svc string, n int, opts ...taskOpt) []*pb.Task {
	out := make([]*pb.Task, n)
	for i := range out {
		out[i] = task(svc, uint64(i+1), opts...)
	}
	return out
}

func on(nodeID string) taskOpt {
	return func(t *pb.Task) {
		t.NodeId = nodeID
		t.Status.State = pb.TaskState_TASK_STATE_RUNNING
	}
}

func pinnedTo(nodeID string) taskOpt { return func(t *pb.Task) { t.NodeId = nodeID } }

func withID(id string) taskOpt { return func(t *pb.Task) { t.Id = id } }

func reserve(cpus, mem int64) taskOpt {
	return func(t *pb.Task) {
		t.Spec.Resources.Reservations = &pb.ResourceSet{NanoCpus: cpus, MemoryBytes: mem}
	}
}

func constraints(cs ...string) taskOpt {
	return func(t *pb.Task) { t.Spec.Placement.Constraints = cs }
}

func spreadOver(descs ...string) taskOpt {
	return func(t *pb.Task) {
		for _, d := range descs {
			t.Spec.Placement.Preferences = append(t.Spec.Placement.Preferences, &pb.PlacementPreference{SpreadDescriptor: d})
		}
	}
}

func maxPerNode(m uint64) taskOpt {
	return func(t *pb.Task) { t.Spec.Placement.MaxReplicasPerNode = m }
}

func binpack(t *pb.Task) { t.Spec.Placement.Strategy = pb.Placement_STRATEGY_BINPACK }

func hostPort80(t *pb.Task) { publish(80, pb.PortConfig_PUBLISH_MODE_HOST)(t) }

func publish(port uint32, mode pb.PortConfig_PublishMode) taskOpt {
	return func(t *pb.Task) {
		t.Endpoint = &pb.Endpoint{Spec: &pb.EndpointSpec{Ports: []*pb.PortConfig{
			{TargetPort: 8080, PublishedPort: port, PublishMode: mode},
		}}}
	}
}

// perNode counts the assignments of res by node ID.
func perNode(res Result) map[string]int {
	m := map[string]int{}
	for _, a := range res.Assignments {
		m[a.NodeID]++
	}
	return m
}

// reasons lists the distinct reasons of res, sorted.
func reasons(res Result) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range res.Unplaced {
		if !seen[u.Reason] {
			seen[u.Reason] = true
			out = append(out, u.Reason)
		}
	}
	sort.Strings(out)
	return out
}

// checkCapacity fails t when the assignments of res overcommit a node.
func checkCapacity(t *testing.T, nodes []*pb.Node, assigned, pending []*pb.Task, res Result) {
	t.Helper()
	byID := map[string]*pb.Task{}
	for _, p := range pending {
		byID[p.Id] = p
	}
	usedCPU, usedMem := map[string]int64{}, map[string]int64{}
	add := func(nodeID string, tk *pb.Task) {
		r := tk.GetSpec().GetResources().GetReservations()
		usedCPU[nodeID] += r.GetNanoCpus()
		usedMem[nodeID] += r.GetMemoryBytes()
	}
	for _, a := range assigned {
		add(a.NodeId, a)
	}
	for _, a := range res.Assignments {
		add(a.NodeID, byID[a.TaskID])
	}
	for _, n := range nodes {
		r := n.Description.Resources
		if usedCPU[n.Id] > r.NanoCpus || usedMem[n.Id] > r.MemoryBytes {
			t.Errorf("node %s overcommitted: cpu %d/%d mem %d/%d", n.Id, usedCPU[n.Id], r.NanoCpus, usedMem[n.Id], r.MemoryBytes)
		}
	}
}
