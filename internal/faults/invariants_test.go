package faults

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// cluster is two ready nodes and a service of two replicas, one on each,
// each running in the store and on its host.
func cluster() (*State, []Container) {
	node := func(id, host string) *pb.Node {
		return &pb.Node{Id: id, Description: &pb.NodeDescription{Hostname: host},
			Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}}
	}
	task := func(id, node string, slot uint64) *pb.Task {
		return &pb.Task{Id: id, ServiceId: "s1", NodeId: node, Slot: slot,
			DesiredState: pb.TaskState_TASK_STATE_RUNNING,
			Status:       &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING}}
	}
	m := node("m1", "m1")
	m.ManagerStatus = &pb.ManagerStatus{Addr: "m1:4242", Leader: true, Reachability: pb.ManagerStatus_REACHABILITY_REACHABLE}
	st := &State{
		Nodes: []*pb.Node{m, node("n1", "a1"), node("n2", "a2")},
		Services: []*pb.Service{{Id: "s1", Spec: &pb.ServiceSpec{
			Annotations: &pb.Annotations{Name: "web"}, Replicas: proto.Int64(2)}}},
		Tasks: []*pb.Task{task("t1", "n1", 1), task("t2", "n2", 2)},
	}
	return st, []Container{{ID: "t1", Host: "a1"}, {ID: "t2", Host: "a2"}}
}

func TestCheckStateFindsEachViolation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(st *State, running []Container) []Container
		want   string // in the error; "" for none
	}{
		{"settled", func(st *State, r []Container) []Container { return r }, ""},
		{"node down", func(st *State, r []Container) []Container {
			st.Nodes[2].Status.State = pb.NodeStatus_STATE_DOWN
			return r
		}, "task t2 is to run on a2, which is down"},
		{"manager unreachable", func(st *State, r []Container) []Container {
			st.Nodes[0].ManagerStatus.Reachability = pb.ManagerStatus_REACHABILITY_UNREACHABLE
			return r
		}, "manager m1:4242 is REACHABILITY_UNREACHABLE"},
		{"no leader", func(st *State, r []Container) []Container {
			st.Nodes[0].ManagerStatus.Leader = false
			return r
		}, "0 managers lead"},
		{"replica missing in the store", func(st *State, r []Container) []Container {
			st.Tasks[1].Status.State = pb.TaskState_TASK_STATE_STARTING
			return r
		}, "1 running in the store, want 2"},
		{"slot twice in the store", func(st *State, r []Container) []Container {
			st.Tasks[1].Slot = 1
			return r
		}, "slot 1 has 2 live tasks"},
		{"container gone from its host", func(st *State, r []Container) []Container {
			return r[:1]
		}, "runs 1 containers on the hosts, want 2"},
		{"orphan of a stopped task", func(st *State, r []Container) []Container {
			st.Tasks = append(st.Tasks, &pb.Task{Id: "t0", ServiceId: "s1", NodeId: "n1", Slot: 1,
				DesiredState: pb.TaskState_TASK_STATE_SHUTDOWN})
			return append(r, Container{ID: "t0", Host: "a1"})
		}, "orphaned container t0 on a1"},
		{"orphan of no task", func(st *State, r []Container) []Container {
			return append(r, Container{ID: "tx", Host: "a2"})
		}, "orphaned container tx on a2: no such task"},
		{"container on the wrong host", func(st *State, r []Container) []Container {
			r[1].Host = "a1"
			return r
		}, "container t2 runs on a1, its task is on a2"},
		{"slot twice on the hosts", func(st *State, r []Container) []Container {
			st.Tasks = append(st.Tasks, &pb.Task{Id: "t3", ServiceId: "s1", NodeId: "n2", Slot: 1,
				DesiredState: pb.TaskState_TASK_STATE_RUNNING})
			st.Services[0].Spec.Replicas = proto.Int64(3)
			return append(r, Container{ID: "t3", Host: "a2"})
		}, "slot web.1 runs 2 containers on the hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, running := cluster()
			err := CheckState(st, tt.mutate(st, running))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckState = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckState = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
