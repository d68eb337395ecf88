package deploy

import (
	"maps"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// unit is what the orchestrator reconciles as one: a slot of a replicated
// service (slot >= 1), or the task of a global service on one node
// (slot 0). At most one task of a unit has desired state RUNNING or earlier.
type unit struct {
	service string
	slot    uint64
	node    string // global units only
}

// unitOf returns the unit a task belongs to.
func unitOf(t *pb.Task) unit {
	if t.GetSlot() > 0 {
		return unit{service: t.GetServiceId(), slot: t.GetSlot()}
	}
	return unit{service: t.GetServiceId(), node: t.GetNodeId()}
}

// dirty is what the next round must look at.
type dirty struct {
	all      bool            // every service and every task's service
	services map[string]bool // whole services (spec changed, created, removed)
	nodes    map[string]bool // nodes whose state, availability or labels changed
	units    map[unit]bool   // single slots or global nodes
}

func newDirty() *dirty {
	return &dirty{services: map[string]bool{}, nodes: map[string]bool{}, units: map[unit]bool{}}
}

func (d *dirty) empty() bool {
	return !d.all && len(d.services) == 0 && len(d.nodes) == 0 && len(d.units) == 0
}

func (d *dirty) reset() {
	d.all = false
	clear(d.services)
	clear(d.nodes)
	clear(d.units)
}

// note records what an event makes dirty.
func (d *dirty) note(ev store.Event) {
	switch o := ev.Object.(type) {
	case *pb.Task:
		d.units[unitOf(o)] = true
	case *pb.Service:
		d.services[o.GetId()] = true
	case *pb.Node:
		old, _ := ev.Old.(*pb.Node)
		if ev.Kind != store.EventUpdate || nodeChanged(old, o) {
			d.nodes[o.GetId()] = true
		}
	case *pb.Cluster:
		old, _ := ev.Old.(*pb.Cluster)
		if old.GetSpec().GetTaskHistoryLimit() != o.GetSpec().GetTaskHistoryLimit() {
			d.all = true
		}
	}
}

// nodeChanged reports whether an update touched anything that decides
// where tasks may run: status, availability, role, labels, platform.
// Heartbeat-only updates change none of these.
func nodeChanged(old, n *pb.Node) bool {
	if old == nil {
		return true
	}
	return old.GetStatus().GetState() != n.GetStatus().GetState() ||
		old.GetRole() != n.GetRole() ||
		!proto.Equal(old.GetSpec(), n.GetSpec()) ||
		old.GetDescription().GetHostname() != n.GetDescription().GetHostname() ||
		!proto.Equal(old.GetDescription().GetPlatform(), n.GetDescription().GetPlatform()) ||
		!maps.Equal(old.GetDescription().GetEngineLabels(), n.GetDescription().GetEngineLabels())
}
