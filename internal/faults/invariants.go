package faults

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	pb "berth/proto/berth/v1"
)

// State is the cluster as the store holds it.
type State struct {
	Services []*pb.Service
	Tasks    []*pb.Task
	Nodes    []*pb.Node
}

// Container is a container whose init runs on a host, as the host's own
// runtime state and process table show it: ID is its task's ID, Host the
// hostname of the agent's node.
type Container struct {
	ID, Host string
}

// CheckState checks the invariants of a settled cluster, from the store and
// from the containers running on the hosts: every node ready, every
// manager reachable and one of them leading, no live task
// on a node that is down, every service with exactly its replicas desired
// and running in the store and no slot twice, and on the hosts exactly the
// live tasks running, each on its own node (no orphan, no duplicate).
func CheckState(st *State, running []Container) error {
	return errors.Join(nodesReady(st), noTaskOnDownNode(st), replicasInStore(st), replicasOnHosts(st, running))
}

func nodesReady(st *State) error {
	leaders := 0
	for _, n := range st.Nodes {
		if n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
			return fmt.Errorf("node %s is %s", n.GetDescription().GetHostname(), n.GetStatus().GetState())
		}
		ms := n.GetManagerStatus()
		if ms == nil {
			continue
		}
		// A follower knows only its own and the leader's reachability
		// (UNKNOWN for the others); only the leader says UNREACHABLE.
		if ms.GetReachability() == pb.ManagerStatus_REACHABILITY_UNREACHABLE {
			return fmt.Errorf("manager %s is %s", ms.GetAddr(), ms.GetReachability())
		}
		if ms.GetLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d managers lead, want 1", leaders)
	}
	return nil
}

// live is a task the managers want running.
func live(t *pb.Task) bool { return t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING }

func noTaskOnDownNode(st *State) error {
	down := map[string]string{}
	for _, n := range st.Nodes {
		if n.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN {
			down[n.GetId()] = n.GetDescription().GetHostname()
		}
	}
	for _, t := range st.Tasks {
		if live(t) && down[t.GetNodeId()] != "" {
			return fmt.Errorf("task %s is to run on %s, which is down", t.GetId(), down[t.GetNodeId()])
		}
	}
	return nil
}

// replicasInStore: every service has exactly its replicas desired and
// observed running, and no slot twice.
func replicasInStore(st *State) error {
	for _, s := range st.Services {
		want := int(s.GetSpec().GetReplicas())
		name := s.GetSpec().GetAnnotations().GetName()
		desired, running, slots := 0, 0, map[uint64]int{}
		for _, t := range st.Tasks {
			if t.GetServiceId() != s.GetId() || !live(t) {
				continue
			}
			desired++
			slots[t.GetSlot()]++
			if t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
				running++
			}
		}
		if desired != want || running != want {
			return fmt.Errorf("service %s: %d tasks desired and %d running in the store, want %d", name, desired, running, want)
		}
		for slot, k := range slots {
			if k > 1 {
				return fmt.Errorf("service %s: slot %d has %d live tasks", name, slot, k)
			}
		}
	}
	return nil
}

// replicasOnHosts: the containers running on the hosts are exactly the
// live tasks, each on the node it is assigned to; so every service runs
// its replicas, no slot twice, and nothing runs that the store does not
// want (no orphan).
func replicasOnHosts(st *State, onHosts []Container) error {
	tasks := map[string]*pb.Task{}
	for _, t := range st.Tasks {
		tasks[t.GetId()] = t
	}
	nodeOf := map[string]string{} // node ID -> agent name
	for _, n := range st.Nodes {
		nodeOf[n.GetId()] = n.GetDescription().GetHostname()
	}
	svcName := map[string]string{}
	for _, s := range st.Services {
		svcName[s.GetId()] = s.GetSpec().GetAnnotations().GetName()
	}
	perSlot, perService := map[string]int{}, map[string]int{}
	for _, c := range onHosts {
		t := tasks[c.ID]
		switch {
		case t == nil:
			return fmt.Errorf("orphaned container %s on %s: no such task in the store", c.ID, c.Host)
		case !live(t):
			return fmt.Errorf("orphaned container %s on %s: its task of %s is %s", c.ID, c.Host, svcName[t.GetServiceId()], t.GetDesiredState())
		case nodeOf[t.GetNodeId()] != c.Host:
			return fmt.Errorf("container %s runs on %s, its task is on %s", c.ID, c.Host, nodeOf[t.GetNodeId()])
		}
		perSlot[fmt.Sprintf("%s.%d", svcName[t.GetServiceId()], t.GetSlot())]++
		perService[t.GetServiceId()]++
	}
	for slot, k := range perSlot {
		if k > 1 {
			return fmt.Errorf("slot %s runs %d containers on the hosts", slot, k)
		}
	}
	var errs []string
	for _, s := range st.Services {
		if got, want := perService[s.GetId()], int(s.GetSpec().GetReplicas()); got != want {
			errs = append(errs, fmt.Sprintf("service %s runs %d containers on the hosts, want %d", svcName[s.GetId()], got, want))
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
