package store

import (
	"fmt"
	"strings"

	berthv1 "berth/proto/berth/v1"
)

// By selects objects in a Find call. Each selector works on the tables that
// have its index; others return ErrInvalidFindBy.
type By interface {
	// query returns the memdb index and argument for table t.
	query(t *table) (index string, arg string, prefix bool, err error)
}

type byAll struct{}

func (byAll) query(*table) (string, string, bool, error) { return indexID, "", true, nil }

// All selects every object of a table.
var All By = byAll{}

type byIDPrefix string

func (b byIDPrefix) query(*table) (string, string, bool, error) {
	return indexID, string(b), true, nil
}

// ByIDPrefix selects objects whose ID starts with prefix (any table).
func ByIDPrefix(prefix string) By { return byIDPrefix(prefix) }

type byName struct {
	name   string
	prefix bool
}

func (b byName) query(t *table) (string, string, bool, error) {
	if t.uniqueName == nil && t.indexes[indexName] == nil {
		return "", "", false, unsupported(b, t)
	}
	return indexName, strings.ToLower(b.name), b.prefix, nil
}

// ByName selects objects by name, ignoring case: services, networks,
// secrets, configs, the cluster, and nodes (spec name, else hostname).
func ByName(name string) By { return byName{name: name} }

// ByNamePrefix selects objects whose name starts with prefix, ignoring case.
func ByNamePrefix(prefix string) By { return byName{name: prefix, prefix: true} }

type byIndex struct {
	table, index, arg string
	prefix            bool
	what              string
}

func (b byIndex) query(t *table) (string, string, bool, error) {
	if t.name != b.table {
		return "", "", false, unsupported(b, t)
	}
	return b.index, b.arg, b.prefix, nil
}

func unsupported(b By, t *table) error {
	return fmt.Errorf("find %s by %v: %w", t.name, b, ErrInvalidFindBy)
}

// String names the selector in errors.
func (b byIndex) String() string { return b.what }

// ByServiceID selects the tasks of a service, in slot order (then by ID).
func ByServiceID(serviceID string) By {
	return byIndex{tableTask, indexUnit, servicePrefix(serviceID), true, "service " + serviceID}
}

// ByNodeID selects the tasks assigned to a node ("" selects unassigned tasks).
func ByNodeID(nodeID string) By {
	return byIndex{tableTask, indexNode, nodeID, false, "node " + nodeID}
}

// byDesired reads every task and keeps those of one desired state: no
// index serves it, as no loop of the managers asks it (an index costs
// memory in every task).
type byDesired berthv1.TaskState

func (b byDesired) query(t *table) (string, string, bool, error) {
	if t.name != tableTask {
		return "", "", false, unsupported(b, t)
	}
	return indexID, "", true, nil
}

func (b byDesired) keep(o object) bool {
	return o.(*berthv1.Task).GetDesiredState() == berthv1.TaskState(b)
}

// String names the selector in errors.
func (b byDesired) String() string { return "desired state " + berthv1.TaskState(b).String() }

// ByDesiredState selects tasks with that desired state. It reads every
// task of the store: for tests and tools, not for loops.
func ByDesiredState(s berthv1.TaskState) By { return byDesired(s) }

// BySlot selects the tasks of one slot of a replicated service (slot 0:
// every global task of the service).
func BySlot(serviceID string, slot uint64) By {
	return byIndex{tableTask, indexUnit, slotPrefix(serviceID, slot), true, fmt.Sprintf("slot %s.%d", serviceID, slot)}
}

// ByServiceNode selects the tasks of a global service (slot 0) on a node.
// A replicated service's tasks have slots and are not selected.
func ByServiceNode(serviceID, nodeID string) By {
	return byIndex{tableTask, indexUnit, slotPrefix(serviceID, 0) + nodeID, false, "service " + serviceID + " on node " + nodeID}
}

// ByRole selects nodes by the role they hold now.
func ByRole(r berthv1.NodeSpec_Role) By {
	return byIndex{tableNode, indexRole, r.String(), false, "role " + r.String()}
}

// ByHostname selects nodes by hostname, ignoring case.
func ByHostname(hostname string) By {
	return byIndex{tableNode, indexHostname, strings.ToLower(hostname), false, "hostname " + hostname}
}
