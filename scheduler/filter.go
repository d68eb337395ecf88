package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	pb "berth/proto/berth/v1"
)

// A filter refuses nodes that cannot take one kind of task. It is built for
// a task (only the filters a task needs are built, which is swarmkit's
// SetTask), checks nodes (Check) and says in a few words why it refused one
// (Explain), so a person can act on it.
type filter interface {
	ok(n *nodeInfo) bool
	reason() string
}

type readyFilter struct{}

func (readyFilter) ok(n *nodeInfo) bool { return n.state == pb.NodeStatus_STATE_READY }
func (readyFilter) reason() string      { return "node not ready" }

type pausedFilter struct{}

func (pausedFilter) ok(n *nodeInfo) bool { return n.avail != pb.NodeSpec_AVAILABILITY_PAUSE }
func (pausedFilter) reason() string      { return "node paused" }

type drainedFilter struct{}

func (drainedFilter) ok(n *nodeInfo) bool { return n.avail != pb.NodeSpec_AVAILABILITY_DRAIN }
func (drainedFilter) reason() string      { return "node drained" }

type constraintFilter struct{ c Constraint }

func (f constraintFilter) ok(n *nodeInfo) bool { return f.c.match(n) }
func (f constraintFilter) reason() string      { return "constraint " + f.c.String() + " not met" }

type maxReplicasFilter struct {
	service string
	max     int32
}

func (f maxReplicasFilter) ok(n *nodeInfo) bool { return n.services[f.service] < f.max }
func (f maxReplicasFilter) reason() string {
	return "max replicas per node (" + strconv.Itoa(int(f.max)) + ") reached"
}

type portFilter struct{ port hostPort }

func (f portFilter) ok(n *nodeInfo) bool {
	_, used := n.ports[f.port]
	return !used
}
func (f portFilter) reason() string { return "host port " + f.port.String() + " already in use" }

type cpuFilter struct{ want int64 }

func (f cpuFilter) ok(n *nodeInfo) bool { return n.cpuCap-n.cpuUsed >= f.want }
func (f cpuFilter) reason() string      { return "insufficient cpu" }

type memoryFilter struct{ want int64 }

func (f memoryFilter) ok(n *nodeInfo) bool { return n.memCap-n.memUsed >= f.want }
func (f memoryFilter) reason() string      { return "insufficient memory" }

// pipeline runs the filters a task needs in a fixed order (node health,
// constraints, then what placements use up) and counts, per filter, the
// nodes it refused. A node is counted once, by the first filter refusing it.
type pipeline struct {
	filters []filter
	refused []int
	// static counts the leading filters whose answer placements cannot
	// change (health, availability, constraints); the rest are dynamic.
	static int
}

// newPipeline builds the filters for t. An error means t's placement cannot
// be understood (a bad constraint); it names the constraint and the fix.
func newPipeline(t *pb.Task) (*pipeline, error) {
	pl := t.GetSpec().GetPlacement()
	cs, err := ParseConstraints(pl.GetConstraints())
	if err != nil {
		return nil, fmt.Errorf("invalid placement: %w", err)
	}
	fs := []filter{readyFilter{}, pausedFilter{}, drainedFilter{}}
	for _, c := range cs {
		fs = append(fs, constraintFilter{c})
	}
	static := len(fs)
	if m := pl.GetMaxReplicasPerNode(); m > 0 {
		fs = append(fs, maxReplicasFilter{service: t.GetServiceId(), max: int32(min(m, 1<<31-1))})
	}
	for _, p := range taskHostPorts(t) {
		fs = append(fs, portFilter{p})
	}
	r := t.GetSpec().GetResources().GetReservations()
	if c := r.GetNanoCpus(); c > 0 {
		fs = append(fs, cpuFilter{c})
	}
	if m := r.GetMemoryBytes(); m > 0 {
		fs = append(fs, memoryFilter{m})
	}
	return &pipeline{filters: fs, refused: make([]int, len(fs)), static: static}, nil
}

// refuse returns the first filter refusing n, or nil when n can take the task.
func (p *pipeline) refuse(n *nodeInfo) filter {
	for _, f := range p.filters {
		if !f.ok(n) {
			return f
		}
	}
	return nil
}

// check reports whether n can take the task, counting a refusal.
func (p *pipeline) check(n *nodeInfo) bool {
	for i, f := range p.filters {
		if !f.ok(n) {
			p.refused[i]++
			return false
		}
	}
	return true
}

// checkStatic runs only the static filters, counting a refusal.
func (p *pipeline) checkStatic(n *nodeInfo) bool {
	for i := 0; i < p.static; i++ {
		if !p.filters[i].ok(n) {
			p.refused[i]++
			return false
		}
	}
	return true
}

// checkDynamic is check for a node known to pass the static filters.
func (p *pipeline) checkDynamic(n *nodeInfo) bool {
	for i := p.static; i < len(p.filters); i++ {
		if !p.filters[i].ok(n) {
			p.refused[i]++
			return false
		}
	}
	return true
}

// explain renders why no node could take the task, e.g.
// "no suitable node (insufficient memory on 3 nodes; node drained on 1 node)",
// its parts in filter order so the same refusals read the same way. When
// host ports alone refused every node the other filters let through, they
// say so in one part, as Swarm does: "host port 8080/tcp already in use
// on every eligible node" (scaling past the eligible nodes is the fix).
func (p *pipeline) explain() string {
	var parts, ports []string
	portsOnly := p.portsOnly()
	for i, n := range p.refused {
		if n == 0 {
			continue
		}
		if f, ok := p.filters[i].(portFilter); ok && portsOnly {
			ports = append(ports, f.port.String())
			continue
		}
		unit := "nodes"
		if n == 1 {
			unit = "node"
		}
		parts = append(parts, fmt.Sprintf("%s on %d %s", p.filters[i].reason(), n, unit))
	}
	if len(ports) > 0 {
		parts = append(parts, "host port "+strings.Join(ports, " or ")+" already in use on every eligible node")
	}
	if len(parts) == 0 {
		return noSuitableNode + " (no nodes in the cluster)"
	}
	return noSuitableNode + " (" + strings.Join(parts, "; ") + ")"
}

// portsOnly reports whether every node refused past the static filters
// was refused for a host port.
func (p *pipeline) portsOnly() bool {
	ports := 0
	for i := p.static; i < len(p.filters); i++ {
		if _, ok := p.filters[i].(portFilter); ok {
			ports += p.refused[i]
		} else if p.refused[i] > 0 {
			return false
		}
	}
	return ports > 0
}

// noSuitableNode starts every reason a task could not be placed.
const noSuitableNode = "no suitable node"
