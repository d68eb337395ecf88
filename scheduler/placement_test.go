package scheduler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestPlacement(t *testing.T) {
	t.Parallel()
	zones := func(spec ...string) []*pb.Node { // "a:1" = one node in zone a
		var out []*pb.Node
		for _, s := range spec {
			var z string
			var k int
			fmt.Sscanf(s, "%1s:%d", &z, &k)
			for i := 1; i <= k; i++ {
				out = append(out, node(fmt.Sprintf("%s%d", z, i), withLabel("zone", z)))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		nodes     []*pb.Node
		assigned  []*pb.Task
		pending   []*pb.Task
		want      map[string]int // tasks placed per node
		unplaced  int
		wantWhy   string
		ignoreCap bool
	}{
		{name: "spread evenly", nodes: []*pb.Node{node("n1"), node("n2"), node("n3")},
			pending: tasks("web", 7), want: map[string]int{"n1": 3, "n2": 2, "n3": 2}},
		{name: "fewest of the service first", nodes: []*pb.Node{node("n1"), node("n2"), node("n3")},
			assigned: []*pb.Task{task("web", 10, on("n1")), task("web", 11, on("n1"))},
			pending:  tasks("web", 4), want: map[string]int{"n2": 2, "n3": 2}},
		{name: "then fewest tasks overall", nodes: []*pb.Node{node("n1"), node("n2"), node("n3")},
			assigned: []*pb.Task{task("db", 1, on("n1")), task("db", 2, on("n2")), task("db", 3, on("n2"))},
			pending:  tasks("web", 2), want: map[string]int{"n3": 1, "n1": 1}},
		{name: "pause drain down get nothing", nodes: []*pb.Node{
			node("n1"), node("n2", withAvail(pb.NodeSpec_AVAILABILITY_PAUSE)),
			node("n3", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN)), node("n4", withState(pb.NodeStatus_STATE_DOWN))},
			pending: tasks("web", 3), want: map[string]int{"n1": 3}},
		{name: "preference spreads over zones before nodes", nodes: zones("a:1", "b:3"),
			pending: tasks("web", 8, spreadOver("node.labels.zone")), want: map[string]int{"a1": 4, "b1": 2, "b2": 1, "b3": 1}},
		{name: "preference counts running tasks per zone", nodes: zones("a:2", "b:2"),
			assigned: []*pb.Task{task("web", 10, on("a1")), task("web", 11, on("a2")), task("web", 12, on("a2"))},
			pending:  tasks("web", 5, spreadOver("node.labels.zone")), want: map[string]int{"a1": 1, "b1": 2, "b2": 2}},
		{name: "nodes without the label are one group", nodes: append(zones("a:1", "b:1"), node("x1"), node("x2")),
			pending: tasks("web", 6, spreadOver("node.labels.zone")), want: map[string]int{"a1": 2, "b1": 2, "x1": 1, "x2": 1}},
		{name: "preferences in order", nodes: []*pb.Node{
			node("e1", withLabel("region", "eu"), withLabel("zone", "1")),
			node("e2", withLabel("region", "eu"), withLabel("zone", "2")),
			node("e3", withLabel("region", "eu"), withLabel("zone", "2")),
			node("u1", withLabel("region", "us"), withLabel("zone", "1"))},
			pending: tasks("web", 8, spreadOver("node.labels.region", "node.labels.zone")),
			want:    map[string]int{"u1": 4, "e1": 2, "e2": 1, "e3": 1}},
		{name: "full zone yields to the others", nodes: append(zones("b:2"), node("a1", withLabel("zone", "a"), withResources(cpu, 8*gib))),
			pending: tasks("web", 6, spreadOver("node.labels.zone"), reserve(cpu, 0)), want: map[string]int{"a1": 1, "b1": 3, "b2": 2}},
		{name: "binpack fills the fullest node first", nodes: []*pb.Node{node("n1"), node("n2"), node("n3")},
			assigned: []*pb.Task{task("db", 1, on("n2"), reserve(2*cpu, 0))},
			pending:  tasks("web", 6, binpack, reserve(cpu, 0)), want: map[string]int{"n2": 2, "n1": 4}},
		{name: "binpack without reservations stacks by task count", nodes: []*pb.Node{node("n1"), node("n2")},
			assigned: []*pb.Task{task("db", 1, on("n2"))},
			pending:  tasks("web", 5, binpack), want: map[string]int{"n2": 5}},
		{name: "binpack spills when full", nodes: []*pb.Node{node("n1"), node("n2")},
			pending: tasks("web", 6, binpack, reserve(cpu, gib)), want: map[string]int{"n1": 4, "n2": 2}},
		{name: "max replicas per node", nodes: []*pb.Node{node("n1"), node("n2")},
			assigned: []*pb.Task{task("web", 9, on("n1"))},
			pending:  tasks("web", 5, maxPerNode(2)), want: map[string]int{"n1": 1, "n2": 2}, unplaced: 2,
			wantWhy: "no suitable node (max replicas per node (2) reached on 2 nodes)"},
		{name: "host port once per node", nodes: []*pb.Node{node("n1"), node("n2"), node("n3")},
			assigned: []*pb.Task{task("api", 1, on("n3"), hostPort80)},
			pending:  tasks("web", 3, hostPort80), want: map[string]int{"n1": 1, "n2": 1}, unplaced: 1,
			wantWhy: "no suitable node (host port 80/tcp already in use on every eligible node)"},
		{name: "resources accounted across the batch", nodes: []*pb.Node{node("n1"), node("n2")},
			pending: tasks("web", 10, reserve(cpu, 0)), want: map[string]int{"n1": 4, "n2": 4}, unplaced: 2,
			wantWhy: "no suitable node (insufficient cpu on 2 nodes)"},
		{name: "resources accounted across services", nodes: []*pb.Node{node("n1"), node("n2")},
			pending: append(tasks("api", 3, reserve(2*cpu, 0)), tasks("web", 3, reserve(cpu, 0))...),
			want:    map[string]int{"n1": 2, "n2": 3}, unplaced: 1,
			wantWhy: "no suitable node (insufficient cpu on 2 nodes)"},
		{name: "global tasks go to their node only", nodes: []*pb.Node{node("n1"), node("n2"), node("n3", withAvail(pb.NodeSpec_AVAILABILITY_PAUSE))},
			pending: []*pb.Task{task("mon", 0, withID("m1"), pinnedTo("n1")), task("mon", 0, withID("m2"), pinnedTo("n2")),
				task("mon", 0, withID("m3"), pinnedTo("n3"))},
			want: map[string]int{"n1": 1, "n2": 1}, unplaced: 1, wantWhy: "no suitable node (node paused on 1 node)"},
		{name: "global tasks placed before the rest", nodes: []*pb.Node{node("n1")},
			pending: append(tasks("web", 1, reserve(3*cpu, 0)), task("mon", 0, withID("m1"), pinnedTo("n1"), reserve(2*cpu, 0))),
			want:    map[string]int{"n1": 1}, unplaced: 1, wantWhy: "no suitable node (insufficient cpu on 1 node)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Schedule(tc.nodes, tc.assigned, tc.pending)
			if got := perNode(res); !maps.Equal(got, tc.want) {
				t.Errorf("per node = %v, want %v", got, tc.want)
			}
			if len(res.Unplaced) != tc.unplaced {
				t.Errorf("unplaced = %+v, want %d", res.Unplaced, tc.unplaced)
			}
			if tc.wantWhy != "" {
				if got := reasons(res); len(got) != 1 || got[0] != tc.wantWhy {
					t.Errorf("reasons = %q, want %q", got, tc.wantWhy)
				}
			}
			if len(res.Assignments)+len(res.Unplaced) != len(tc.pending) {
				t.Errorf("%d decisions for %d tasks", len(res.Assignments)+len(res.Unplaced), len(tc.pending))
			}
			checkCapacity(t, tc.nodes, tc.assigned, tc.pending, res)
		})
	}
}

// TestSlotsInOrder: within a service, lower slots are placed first, so when
// only some fit, the highest slots wait.
func TestSlotsInOrder(t *testing.T) {
	t.Parallel()
	pending := tasks("web", 5, reserve(2*cpu, 0))
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
	res := Schedule([]*pb.Node{node("n1")}, nil, pending)
	want := []Assignment{{"web.1", "n1"}, {"web.2", "n1"}}
	if !reflect.DeepEqual(res.Assignments, want) {
		t.Errorf("assignments = %v, want %v", res.Assignments, want)
	}
}

// TestPlaceKeepsCounting: a Cluster remembers what it placed, so a second
// batch spreads on top of the first and sees the resources it took.
func TestPlaceKeepsCounting(t *testing.T) {
	t.Parallel()
	c := New([]*pb.Node{node("n1"), node("n2")}, nil)
	first := c.Place(tasks("web", 3, reserve(cpu, 0)))
	second := c.Place([]*pb.Task{task("web", 4, reserve(cpu, 0)), task("api", 1, reserve(4*cpu, 0))})
	if got := perNode(first); !maps.Equal(got, map[string]int{"n1": 2, "n2": 1}) {
		t.Errorf("first batch = %v", got)
	}
	if got := perNode(second); !maps.Equal(got, map[string]int{"n2": 1}) {
		t.Errorf("second batch = %v, want web.4 on n2", got)
	}
	if got := reasons(second); len(got) != 1 || got[0] != "no suitable node (insufficient cpu on 2 nodes)" {
		t.Errorf("reasons = %q", got)
	}
}

// randomCluster makes a mixed cluster and workload from seed.
func randomCluster(seed uint64) (nodes []*pb.Node, assigned, pending []*pb.Task) {
	return randomWorkload(seed, 40, 12, 5, 40)
}

// randomWorkload makes n nodes in three zones, some drained, down or
// managers, of varied sizes, and services of tasks each (minTasks plus up
// to spread more) with varied reservations, constraints, preferences,
// strategies, ports and replica limits. A quarter of the tasks already run.
func randomWorkload(seed uint64, n, services, minTasks, spread int) (nodes []*pb.Node, assigned, pending []*pb.Task) {
	r := rand.New(rand.NewPCG(seed, 7))
	zones := []string{"a", "b", "c"}
	var running []*pb.Task
	for i := 0; i < n; i++ {
		opts := []nodeOpt{withLabel("zone", zones[r.IntN(3)]), withResources(int64(1+r.IntN(8))*cpu, int64(1+r.IntN(16))*gib)}
		switch r.IntN(10) {
		case 0:
			opts = append(opts, withAvail(pb.NodeSpec_AVAILABILITY_DRAIN))
		case 1:
			opts = append(opts, withState(pb.NodeStatus_STATE_DOWN))
		case 2:
			opts = append(opts, asManager)
		}
		nodes = append(nodes, node(fmt.Sprintf("n%02d", i), opts...))
	}
	for s := 0; s < services; s++ {
		svc := fmt.Sprintf("svc%d", s)
		opts := []taskOpt{reserve(int64(r.IntN(3))*cpu/2, int64(r.IntN(4))*gib/2)}
		if s%3 == 0 {
			opts = append(opts, spreadOver("node.labels.zone"))
		}
		if s%4 == 1 {
			opts = append(opts, constraints("node.role!=manager"))
		}
		if s%5 == 2 {
			opts = append(opts, binpack)
		}
		if s%6 == 3 {
			opts = append(opts, maxPerNode(2), hostPort80)
		}
		for i, tk := range tasks(svc, minTasks+r.IntN(spread), opts...) {
			if i%4 == 0 {
				running = append(running, tk)
				continue
			}
			pending = append(pending, tk)
		}
	}
	// What already runs got there by a valid placement.
	byID := map[string]*pb.Task{}
	for _, tk := range running {
		byID[tk.Id] = tk
	}
	for _, a := range Schedule(nodes, nil, running).Assignments {
		tk := byID[a.TaskID]
		tk.NodeId, tk.Status.State = a.NodeID, pb.TaskState_TASK_STATE_RUNNING
		assigned = append(assigned, tk)
	}
	return nodes, assigned, pending
}

// TestDeterministic: the same snapshot gives the same decisions, whatever
// the order nodes and tasks come in.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 5; seed++ {
		nodes, assigned, pending := randomCluster(seed)
		want := Schedule(nodes, assigned, pending)
		if len(want.Assignments) == 0 || len(want.Unplaced) == 0 {
			t.Fatalf("seed %d: want a workload that partly fits, got %d placed, %d not", seed, len(want.Assignments), len(want.Unplaced))
		}
		r := rand.New(rand.NewPCG(seed, 99))
		for i := 0; i < 3; i++ {
			r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			r.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
			r.Shuffle(len(assigned), func(i, j int) { assigned[i], assigned[j] = assigned[j], assigned[i] })
			if got := Schedule(nodes, assigned, pending); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d: shuffled input gave different decisions", seed)
			}
		}
	}
}

// TestRandomClustersHoldInvariants: no node is overcommitted, no unfit node
// gets a task, every task is decided once, and each placement would pass
// the commit-time check.
func TestRandomClustersHoldInvariants(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 20; seed++ {
		nodes, assigned, pending := randomCluster(seed)
		if seed%2 == 0 {
			nodes, assigned, pending = randomWorkload(seed, 150, 60, 1, 12)
		}
		res := Schedule(nodes, assigned, pending)
		checkCapacity(t, nodes, assigned, pending, res)
		for _, why := range reasons(res) {
			if n := nodesCounted(why); n != len(nodes) {
				t.Fatalf("seed %d: %q counts %d nodes, want all %d", seed, why, n, len(nodes))
			}
		}
		seen := map[string]bool{}
		for _, a := range res.Assignments {
			seen[a.TaskID] = true
		}
		for _, u := range res.Unplaced {
			if seen[u.TaskID] {
				t.Fatalf("seed %d: %s both placed and unplaced", seed, u.TaskID)
			}
			seen[u.TaskID] = true
		}
		if len(seen) != len(pending) {
			t.Fatalf("seed %d: %d decisions for %d tasks", seed, len(seen), len(pending))
		}
		replayCommit(t, nodes, assigned, pending, res)
	}
}

// nodesCounted adds up the "on N nodes" of a reason.
func nodesCounted(reason string) int {
	total := 0
	for _, m := range regexp.MustCompile(`on (\d+) nodes?`).FindAllStringSubmatch(reason, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

// replayCommit re-checks every assignment as the commit step would, node by
// node with NodeState, and fails t if one no longer fits.
func replayCommit(t *testing.T, nodes []*pb.Node, assigned, pending []*pb.Task, res Result) {
	t.Helper()
	states := map[string]*NodeState{}
	for _, n := range nodes {
		states[n.Id] = NewNodeState(n, assigned)
	}
	byID := map[string]*pb.Task{}
	for _, p := range pending {
		byID[p.Id] = p
	}
	for _, a := range res.Assignments {
		s, tk := states[a.NodeID], byID[a.TaskID]
		if err := s.Fits(tk); err != nil {
			t.Fatalf("commit re-check: %v", err)
		}
		s.Add(tk)
	}
}

// TestKeepingBestNodesDecidesTheSame: a group's tree keeps only as many
// nodes per leaf as the group has tasks; that must not change a decision.
func TestKeepingBestNodesDecidesTheSame(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 30; seed++ {
		nodes, assigned, pending := randomWorkload(seed, 150, 60, 1, 12)
		if seed%3 == 0 {
			nodes, assigned, pending = randomCluster(seed)
		}
		want := New(nodes, assigned)
		want.exhaustive = true
		if got, want := Schedule(nodes, assigned, pending), want.Place(pending); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: decisions differ from the exhaustive tree:\ngot  %+v\nwant %+v", seed, got, want)
		}
	}
}
