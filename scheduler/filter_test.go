package scheduler

import (
	"testing"

	pb "berth/proto/berth/v1"
)

// TestFilters runs one task against one node per case: either it lands on
// the node or the reason names the filter that refused it.
func TestFilters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		node     *pb.Node
		assigned []*pb.Task
		task     *pb.Task
		want     string // reason; "" means placed on the node
	}{
		{name: "ready active node", node: node("n1"), task: task("web", 1)},
		{name: "down", node: node("n1", withState(pb.NodeStatus_STATE_DOWN)), task: task("web", 1),
			want: "no suitable node (node not ready on 1 node)"},
		{name: "unknown state", node: node("n1", withState(pb.NodeStatus_STATE_UNKNOWN)), task: task("web", 1),
			want: "no suitable node (node not ready on 1 node)"},
		{name: "disconnected", node: node("n1", withState(pb.NodeStatus_STATE_DISCONNECTED)), task: task("web", 1),
			want: "no suitable node (node not ready on 1 node)"},
		{name: "paused", node: node("n1", withAvail(pb.NodeSpec_AVAILABILITY_PAUSE)), task: task("web", 1),
			want: "no suitable node (node paused on 1 node)"},
		{name: "drained", node: node("n1", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN)), task: task("web", 1),
			want: "no suitable node (node drained on 1 node)"},
		{name: "node.id ==", node: node("n1"), task: task("web", 1, constraints("node.id==n1"))},
		{name: "node.id == other", node: node("n1"), task: task("web", 1, constraints("node.id==n2")),
			want: "no suitable node (constraint node.id==n2 not met on 1 node)"},
		{name: "node.hostname !=", node: node("n1"), task: task("web", 1, constraints("node.hostname!=host-n1")),
			want: "no suitable node (constraint node.hostname!=host-n1 not met on 1 node)"},
		{name: "hostname ignores case", node: node("n1"), task: task("web", 1, constraints("node.hostname==HOST-N1"))},
		{name: "node.role manager on worker", node: node("n1"), task: task("web", 1, constraints("node.role==manager")),
			want: "no suitable node (constraint node.role==manager not met on 1 node)"},
		{name: "node.role manager", node: node("n1", asManager), task: task("web", 1, constraints("node.role==manager"))},
		{name: "node.role != manager", node: node("n1", asManager), task: task("web", 1, constraints("node.role!=manager")),
			want: "no suitable node (constraint node.role!=manager not met on 1 node)"},
		{name: "label ==", node: node("n1", withLabel("zone", "a")), task: task("web", 1, constraints("node.labels.zone==a"))},
		{name: "label == other", node: node("n1", withLabel("zone", "a")), task: task("web", 1, constraints("node.labels.zone==b")),
			want: "no suitable node (constraint node.labels.zone==b not met on 1 node)"},
		{name: "missing label ==", node: node("n1"), task: task("web", 1, constraints("node.labels.zone==a")),
			want: "no suitable node (constraint node.labels.zone==a not met on 1 node)"},
		{name: "missing label !=", node: node("n1"), task: task("web", 1, constraints("node.labels.zone!=a"))},
		{name: "label != same", node: node("n1", withLabel("zone", "a")), task: task("web", 1, constraints("node.labels.zone!=a")),
			want: "no suitable node (constraint node.labels.zone!=a not met on 1 node)"},
		{name: "os", node: node("n1"), task: task("web", 1, constraints("node.platform.os==linux"))},
		{name: "os other", node: node("n1"), task: task("web", 1, constraints("node.platform.os==windows")),
			want: "no suitable node (constraint node.platform.os==windows not met on 1 node)"},
		{name: "arch alias", node: node("n1"), task: task("web", 1, constraints("node.platform.arch==x86_64"))},
		{name: "arch other", node: node("n1"), task: task("web", 1, constraints("node.platform.arch==arm64")),
			want: "no suitable node (constraint node.platform.arch==arm64 not met on 1 node)"},
		{name: "first failing constraint named", node: node("n1", withLabel("zone", "a")),
			task: task("web", 1, constraints("node.labels.zone==a", "node.role==manager", "node.labels.disk==ssd")),
			want: "no suitable node (constraint node.role==manager not met on 1 node)"},
		{name: "cpu fits exactly", node: node("n1"), task: task("web", 1, reserve(4*cpu, 0))},
		{name: "cpu", node: node("n1"), task: task("web", 1, reserve(5*cpu, 0)),
			want: "no suitable node (insufficient cpu on 1 node)"},
		{name: "memory", node: node("n1"), task: task("web", 1, reserve(0, 9*gib)),
			want: "no suitable node (insufficient memory on 1 node)"},
		{name: "memory used by assigned", node: node("n1"), assigned: []*pb.Task{task("db", 1, on("n1"), reserve(0, 6*gib))},
			task: task("web", 1, reserve(0, 3*gib)), want: "no suitable node (insufficient memory on 1 node)"},
		{name: "finished assigned holds nothing", node: node("n1"),
			assigned: []*pb.Task{task("db", 1, on("n1"), reserve(0, 6*gib), func(t *pb.Task) { t.Status.State = pb.TaskState_TASK_STATE_FAILED })},
			task:     task("web", 1, reserve(0, 3*gib))},
		{name: "node reports no resources", node: node("n1", withResources(0, 0)), task: task("web", 1, reserve(1, 0)),
			want: "no suitable node (insufficient cpu on 1 node)"},
		{name: "host port in use", node: node("n1"), assigned: []*pb.Task{task("api", 1, on("n1"), hostPort80)},
			task: task("web", 1, hostPort80), want: "no suitable node (host port 80/tcp already in use on every eligible node)"},
		{name: "host port in use where the constraint allows", node: node("n1", withLabel("zone", "a")),
			assigned: []*pb.Task{task("api", 1, on("n1"), hostPort80)}, task: task("web", 1, hostPort80, constraints("node.labels.zone==a")),
			want: "no suitable node (host port 80/tcp already in use on every eligible node)"},
		{name: "host port other protocol", node: node("n1"), assigned: []*pb.Task{task("api", 1, on("n1"), hostPort80)},
			task: task("web", 1, hostPort80, func(t *pb.Task) { t.Endpoint.Spec.Ports[0].Protocol = pb.PortConfig_PROTOCOL_UDP })},
		{name: "ingress port never conflicts", node: node("n1"), assigned: []*pb.Task{task("api", 1, on("n1"), publish(80, pb.PortConfig_PUBLISH_MODE_INGRESS))},
			task: task("web", 1, publish(80, pb.PortConfig_PUBLISH_MODE_INGRESS))},
		{name: "dynamic host port never conflicts", node: node("n1"), assigned: []*pb.Task{task("api", 1, on("n1"), publish(0, pb.PortConfig_PUBLISH_MODE_HOST))},
			task: task("web", 1, publish(0, pb.PortConfig_PUBLISH_MODE_HOST))},
		{name: "max replicas reached", node: node("n1"), assigned: []*pb.Task{task("web", 1, on("n1"))},
			task: task("web", 2, maxPerNode(1)), want: "no suitable node (max replicas per node (1) reached on 1 node)"},
		{name: "max replicas counts only the service", node: node("n1"), assigned: []*pb.Task{task("api", 1, on("n1"))},
			task: task("web", 2, maxPerNode(1))},
		{name: "bad constraint", node: node("n1"), task: task("web", 1, constraints("node.color==red")),
			want: `invalid placement: constraint "node.color==red": unknown key "node.color"; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.NAME`},
		{name: "pinned to missing node", node: node("n1"), task: task("web", 0, pinnedTo("n9")),
			want: "no suitable node (node n9 is not in the cluster)"},
		{name: "pinned to drained node", node: node("n1", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN)), task: task("web", 0, pinnedTo("n1")),
			want: "no suitable node (node drained on 1 node)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Schedule([]*pb.Node{tc.node}, tc.assigned, []*pb.Task{tc.task})
			if tc.want == "" {
				if len(res.Assignments) != 1 || res.Assignments[0] != (Assignment{tc.task.Id, tc.node.Id}) {
					t.Fatalf("got %+v, want %s on %s", res, tc.task.Id, tc.node.Id)
				}
				return
			}
			if len(res.Unplaced) != 1 || res.Unplaced[0].TaskID != tc.task.Id || res.Unplaced[0].Reason != tc.want {
				t.Fatalf("got %+v\nwant reason %q", res, tc.want)
			}
		})
	}
}

// TestNoNodes: an empty cluster says so.
func TestNoNodes(t *testing.T) {
	t.Parallel()
	res := Schedule(nil, nil, tasks("web", 2))
	if got := reasons(res); len(got) != 1 || got[0] != "no suitable node (no nodes in the cluster)" {
		t.Fatalf("reasons = %q", got)
	}
}

// TestReasonAggregatesOverNodes: every node is counted once, by the first
// filter that refused it, and the parts always come in the same order.
func TestReasonAggregatesOverNodes(t *testing.T) {
	t.Parallel()
	nodes := []*pb.Node{
		node("d1", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN), withLabel("zone", "x")),
		node("x1", withLabel("zone", "x")),
		node("x2", withLabel("zone", "x")),
		node("m1", withLabel("zone", "c"), withResources(4*cpu, gib)),
		node("m2", withLabel("zone", "c"), withResources(4*cpu, gib)),
		node("m3", withLabel("zone", "c"), withResources(4*cpu, gib)),
		node("down", withState(pb.NodeStatus_STATE_DOWN)),
	}
	want := "no suitable node (node not ready on 1 node; node drained on 1 node; " +
		"constraint node.labels.zone==c not met on 2 nodes; insufficient memory on 3 nodes)"
	for i := 0; i < 3; i++ { // any node order reads the same
		nodes = append(nodes[1:], nodes[0])
		res := Schedule(nodes, nil, tasks("web", 2, constraints("node.labels.zone==c"), reserve(0, 2*gib)))
		if len(res.Assignments) != 0 || len(res.Unplaced) != 2 {
			t.Fatalf("got %+v", res)
		}
		if got := reasons(res); len(got) != 1 || got[0] != want {
			t.Fatalf("reasons = %q\nwant %q", got, want)
		}
	}
}

// TestHostPortOnEveryEligibleNode: tasks publishing one host-mode port
// take one node each, as Swarm's do; the rest stay pending, saying the
// port is taken wherever they may go, or counting nodes when something
// else refused some of them too.
func TestHostPortOnEveryEligibleNode(t *testing.T) {
	t.Parallel()
	nodes := []*pb.Node{
		node("a1", withLabel("zone", "a")), node("a2", withLabel("zone", "a")),
		node("b1", withLabel("zone", "b")), node("full", withLabel("zone", "a"), withResources(4*cpu, gib)),
	}
	for _, tc := range []struct {
		name    string
		pending []*pb.Task
		placed  int
		want    string
	}{
		{name: "one task per node", pending: tasks("web", 5, hostPort80), placed: 4,
			want: "no suitable node (host port 80/tcp already in use on every eligible node)"},
		{name: "behind a constraint", pending: tasks("web", 4, hostPort80, constraints("node.labels.zone==a")), placed: 3,
			want: "no suitable node (constraint node.labels.zone==a not met on 1 node; host port 80/tcp already in use on every eligible node)"},
		{name: "several ports", pending: tasks("web", 5, hostPort80, func(t *pb.Task) {
			t.Endpoint.Spec.Ports = append(t.Endpoint.Spec.Ports, &pb.PortConfig{TargetPort: 443, PublishedPort: 443, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST})
		}), placed: 4, want: "no suitable node (host port 80/tcp already in use on every eligible node)"},
		{name: "memory refused one", pending: tasks("web", 4, hostPort80, reserve(0, 2*gib)), placed: 3,
			want: "no suitable node (host port 80/tcp already in use on 3 nodes; insufficient memory on 1 node)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Schedule(nodes, nil, tc.pending)
			if len(res.Assignments) != tc.placed {
				t.Fatalf("placed %d, want %d: %+v", len(res.Assignments), tc.placed, res)
			}
			on := map[string]bool{}
			for _, a := range res.Assignments {
				if on[a.NodeID] {
					t.Errorf("two tasks publishing host port 80 on %s", a.NodeID)
				}
				on[a.NodeID] = true
			}
			if got := reasons(res); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("reasons = %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestConstraintMatches(t *testing.T) {
	t.Parallel()
	n := node("n1", asManager, withLabel("Zone", "eu-1"), func(n *pb.Node) { n.Description.Platform.Architecture = "aarch64" })
	for _, tc := range []struct {
		c    string
		want bool
	}{
		{"node.role==manager", true},
		{"node.labels.Zone==EU-1", true},
		{"node.labels.zone==eu-1", false}, // label names keep their case
		{"node.labels.zone!=eu-1", true},
		{"node.platform.arch==arm64", true},
		{"node.platform.arch!=arm64", false},
		{"node.id!=n1", false},
	} {
		c, err := ParseConstraint(tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Matches(n); got != tc.want {
			t.Errorf("%s matches = %v, want %v", tc.c, got, tc.want)
		}
	}
	cs, _ := ParseConstraints([]string{"node.role==manager", "node.labels.Zone==eu-1"})
	if !MatchesAll(cs, n) || MatchesAll(cs, node("n2")) {
		t.Errorf("MatchesAll: want the manager in eu-1 only")
	}
}
