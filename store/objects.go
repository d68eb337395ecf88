package store

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// object is what every stored message has: an ID and a Meta.
type object interface {
	proto.Message
	GetId() string
	GetMeta() *berthv1.Meta
}

// table describes one kind of object: its memdb table, how to set its Meta,
// how to wrap it into a StoreAction, and its unique name when it has one.
type table struct {
	name       string
	setMeta    func(object, *berthv1.Meta)
	wrap       func(berthv1.StoreAction_Kind, object) *berthv1.StoreAction
	uniqueName func(object) string // nil: names need not be unique
	indexes    map[string]func(object) (string, bool)
}

// Table names, as used by memdb and in error messages.
const (
	tableNode    = "node"
	tableService = "service"
	tableTask    = "task"
	tableNetwork = "network"
	tableSecret  = "secret"
	tableConfig  = "config"
	tableCluster = "cluster"
	tableRemoved = "removed_node"
	tableIndex   = "index"
)

// Index names beyond "id".
const (
	indexID       = "id"
	indexName     = "name"
	indexHostname = "hostname"
	indexRole     = "role"
	indexNode     = "node"
	indexUnit     = "unit"
)

func lowerName(s string) (string, bool) { return strings.ToLower(s), s != "" }

func nameOf(a *berthv1.Annotations) string { return a.GetName() }

var (
	nodes = &table{
		name:    tableNode,
		setMeta: func(o object, m *berthv1.Meta) { o.(*berthv1.Node).Meta = m },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Node{Node: o.(*berthv1.Node)}}
		},
		indexes: map[string]func(object) (string, bool){
			indexName: func(o object) (string, bool) {
				n := o.(*berthv1.Node)
				if name := nameOf(n.GetSpec().GetAnnotations()); name != "" {
					return lowerName(name)
				}
				return lowerName(n.GetDescription().GetHostname())
			},
			indexHostname: func(o object) (string, bool) {
				return lowerName(o.(*berthv1.Node).GetDescription().GetHostname())
			},
			indexRole: func(o object) (string, bool) {
				return o.(*berthv1.Node).GetRole().String(), true
			},
		},
	}
	services = &table{
		name:       tableService,
		setMeta:    func(o object, m *berthv1.Meta) { o.(*berthv1.Service).Meta = m },
		uniqueName: func(o object) string { return nameOf(o.(*berthv1.Service).GetSpec().GetAnnotations()) },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Service{Service: o.(*berthv1.Service)}}
		},
	}
	tasks = &table{
		name:    tableTask,
		setMeta: func(o object, m *berthv1.Meta) { o.(*berthv1.Task).Meta = m },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Task{Task: o.(*berthv1.Task)}}
		},
		// Two indexes beyond the ID: each one is a radix tree over every
		// task, some 400 bytes a task, so tasks have no more than their
		// readers need. The unit index serves by service, by slot and by
		// global task on a node, as prefixes of one key.
		indexes: map[string]func(object) (string, bool){
			indexNode: func(o object) (string, bool) { return o.(*berthv1.Task).GetNodeId(), true },
			indexUnit: func(o object) (string, bool) { return unitKey(o.(*berthv1.Task)), true },
		},
	}
	networks = &table{
		name:       tableNetwork,
		setMeta:    func(o object, m *berthv1.Meta) { o.(*berthv1.Network).Meta = m },
		uniqueName: func(o object) string { return nameOf(o.(*berthv1.Network).GetSpec().GetAnnotations()) },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Network{Network: o.(*berthv1.Network)}}
		},
	}
	secrets = &table{
		name:       tableSecret,
		setMeta:    func(o object, m *berthv1.Meta) { o.(*berthv1.Secret).Meta = m },
		uniqueName: func(o object) string { return nameOf(o.(*berthv1.Secret).GetSpec().GetAnnotations()) },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Secret{Secret: o.(*berthv1.Secret)}}
		},
	}
	configs = &table{
		name:       tableConfig,
		setMeta:    func(o object, m *berthv1.Meta) { o.(*berthv1.Config).Meta = m },
		uniqueName: func(o object) string { return nameOf(o.(*berthv1.Config).GetSpec().GetAnnotations()) },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Config{Config: o.(*berthv1.Config)}}
		},
	}
	clusters = &table{
		name:       tableCluster,
		setMeta:    func(o object, m *berthv1.Meta) { o.(*berthv1.Cluster).Meta = m },
		uniqueName: func(o object) string { return nameOf(o.(*berthv1.Cluster).GetSpec().GetAnnotations()) },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_Cluster{Cluster: o.(*berthv1.Cluster)}}
		},
	}
	// removedNodes remembers the IDs of removed nodes (DeleteNode).
	removedNodes = &table{
		name:    tableRemoved,
		setMeta: func(o object, m *berthv1.Meta) { o.(*berthv1.RemovedNode).Meta = m },
		wrap: func(k berthv1.StoreAction_Kind, o object) *berthv1.StoreAction {
			return &berthv1.StoreAction{Kind: k, Target: &berthv1.StoreAction_RemovedNode{RemovedNode: o.(*berthv1.RemovedNode)}}
		},
	}
	allTables = []*table{nodes, services, tasks, networks, secrets, configs, clusters, removedNodes}
)

// unitKey is the key of a task's unit: its service, then its slot, then
// for a global task (slot 0) its node: "SERVICE\x00SLOT\x00[NODE]". A
// service's tasks share the prefix "SERVICE\x00", a slot's
// "SERVICE\x00SLOT\x00"; the key of a global task on a node is the whole.
func unitKey(t *berthv1.Task) string {
	k := slotPrefix(t.GetServiceId(), t.GetSlot())
	if t.GetSlot() == 0 {
		k += t.GetNodeId()
	}
	return k
}

func servicePrefix(serviceID string) string { return serviceID + "\x00" }

func slotPrefix(serviceID string, slot uint64) string {
	return servicePrefix(serviceID) + strconv.FormatUint(slot, 10) + "\x00"
}

// unwrap returns the table and object an action targets.
func unwrap(a *berthv1.StoreAction) (*table, object, error) {
	switch t := a.GetTarget().(type) {
	case *berthv1.StoreAction_Node:
		return nodes, t.Node, nil
	case *berthv1.StoreAction_Service:
		return services, t.Service, nil
	case *berthv1.StoreAction_Task:
		return tasks, t.Task, nil
	case *berthv1.StoreAction_Network:
		return networks, t.Network, nil
	case *berthv1.StoreAction_Secret:
		return secrets, t.Secret, nil
	case *berthv1.StoreAction_Config:
		return configs, t.Config, nil
	case *berthv1.StoreAction_Cluster:
		return clusters, t.Cluster, nil
	case *berthv1.StoreAction_RemovedNode:
		return removedNodes, t.RemovedNode, nil
	}
	return nil, nil, fmt.Errorf("store action %v has no target: %w", a.GetKind(), ErrInvalidObject)
}

// tableOf returns the table an object belongs to.
func tableOf(o proto.Message) *table {
	switch o.(type) {
	case *berthv1.Node:
		return nodes
	case *berthv1.Service:
		return services
	case *berthv1.Task:
		return tasks
	case *berthv1.Network:
		return networks
	case *berthv1.Secret:
		return secrets
	case *berthv1.Config:
		return configs
	case *berthv1.Cluster:
		return clusters
	case *berthv1.RemovedNode:
		return removedNodes
	}
	return nil
}
