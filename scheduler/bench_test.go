package scheduler

import (
	"fmt"
	"testing"

	pb "berth/proto/berth/v1"
)

// benchCluster makes nodes in 12 zones and 3 tiers (one node in ten a
// manager), and services tasks each: every service constrained, one in two
// spreading over zones, one in ten binpacked.
func benchCluster(nodes, services, perService int) ([]*pb.Node, []*pb.Task) {
	ns := make([]*pb.Node, nodes)
	for i := range ns {
		opts := []nodeOpt{
			withLabel("zone", fmt.Sprintf("z%02d", i%12)),
			withLabel("tier", []string{"web", "batch", "edge"}[i%3]),
			withResources(64*cpu, 256*gib),
		}
		if i%10 == 0 {
			opts = append(opts, asManager)
		}
		ns[i] = node(fmt.Sprintf("node-%05d", i), opts...)
	}
	var pending []*pb.Task
	for s := 0; s < services; s++ {
		opts := []taskOpt{reserve(cpu/10, gib/4)}
		switch s % 3 {
		case 0:
			opts = append(opts, constraints("node.role==worker"))
		case 1:
			opts = append(opts, constraints("node.labels.tier!=edge", "node.platform.os==linux"))
		case 2:
			opts = append(opts, constraints("node.labels.tier==web"))
		}
		if s%2 == 0 {
			opts = append(opts, spreadOver("node.labels.zone"))
		}
		if s%10 == 5 {
			opts = append(opts, binpack)
		}
		pending = append(pending, tasks(fmt.Sprintf("svc-%05d", s), perService, opts...)...)
	}
	return ns, pending
}

func benchSchedule(b *testing.B, nodes, services, perService int) {
	ns, pending := benchCluster(nodes, services, perService)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := Schedule(ns, nil, pending)
		if len(res.Unplaced) != 0 {
			b.Fatalf("%d tasks unplaced: %s", len(res.Unplaced), res.Unplaced[0].Reason)
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(pending))/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkSchedule100kTasks5kNodes places 100 services of 1,000 tasks.
func BenchmarkSchedule100kTasks5kNodes(b *testing.B) { benchSchedule(b, 5000, 100, 1000) }

// BenchmarkSchedule100kTasks1kNodes is the same work on 1,000 nodes.
func BenchmarkSchedule100kTasks1kNodes(b *testing.B) { benchSchedule(b, 1000, 100, 1000) }

// BenchmarkSchedule100kTasks5kNodesSmallServices is the grouping worst case:
// 10,000 services of 10 tasks, each group scanning every node.
func BenchmarkSchedule100kTasks5kNodesSmallServices(b *testing.B) {
	benchSchedule(b, 5000, 10000, 10)
}
