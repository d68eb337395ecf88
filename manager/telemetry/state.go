package telemetry

import (
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"berth/internal/metrics"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// stateCollector counts tasks and nodes by state from the store when
// scraped, so the figures are exactly the store's, on every manager.
type stateCollector struct {
	// st is the store of the manager running now; nil (no figures) while
	// none runs, as in an agent not promoted.
	st    atomic.Pointer[store.MemoryStore]
	tasks *prometheus.Desc
	nodes *prometheus.Desc
}

func newStateCollector() *stateCollector {
	return &stateCollector{
		tasks: prometheus.NewDesc(metrics.Namespace+"_tasks", "Tasks in the store by observed state (new ... running, then the ended states).",
			[]string{"state"}, nil),
		nodes: prometheus.NewDesc(metrics.Namespace+"_nodes", "Nodes in the store by status (ready, down, unknown, disconnected) and availability.",
			[]string{"state", "availability"}, nil),
	}
}

// Describe sends the two descriptors.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasks
	ch <- c.nodes
}

// Collect counts from one read of the store; every state shows, zero or not.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.st.Load()
	if st == nil {
		return
	}
	tasks := map[pb.TaskState]int{}
	type nodeKey struct {
		state pb.NodeStatus_State
		avail pb.NodeSpec_Availability
	}
	nodes := map[nodeKey]int{}
	st.View(func(tx store.ReadTx) {
		ts, _ := tx.FindTasks(store.All)
		for _, t := range ts {
			if t.GetSpec().GetAttachment() == nil { // a standalone container's, not a task to count
				tasks[t.GetStatus().GetState()]++
			}
		}
		ns, _ := tx.FindNodes(store.All)
		for _, n := range ns {
			nodes[nodeKey{n.GetStatus().GetState(), n.GetSpec().GetAvailability()}]++
		}
	})
	for v, name := range pb.TaskState_name {
		s := pb.TaskState(v)
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(tasks[s]), lower(name, "TASK_STATE_"))
	}
	for v, name := range pb.NodeStatus_State_name {
		for a, aname := range pb.NodeSpec_Availability_name {
			k := nodeKey{pb.NodeStatus_State(v), pb.NodeSpec_Availability(a)}
			ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(nodes[k]), lower(name, "STATE_"), lower(aname, "AVAILABILITY_"))
		}
	}
}

func lower(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}
