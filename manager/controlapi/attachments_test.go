package controlapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// attachedTask is a standalone container's attachment on a network, as
// the dispatcher and the allocator store it.
func attachedTask(id, container, node, netID, addr string) *pb.Task {
	return &pb.Task{Id: id, NodeId: node, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Annotations: &pb.Annotations{Name: container},
		Spec: &pb.TaskSpec{Attachment: &pb.NetworkAttachmentSpec{ContainerId: container,
			Networks: []*pb.NetworkAttachment{{Target: netID}}}},
		Networks: []*pb.NetworkAttachmentStatus{{NetworkId: netID, Addresses: []string{addr}}},
		Status:   &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING}}
}

// Standalone containers on a network: --attachable is accepted, inspect
// lists them, rm is refused naming them and their nodes, and task lists
// never show them as service tasks.
func TestAttachableNetworkAndItsContainers(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	req := netSpec("shared", "10.7.0.0/24")
	req.Spec.Attachable = true
	created, err := s.CreateNetwork(ctx, req)
	if err != nil {
		t.Fatalf("create --attachable: %v", err)
	}
	id := created.GetNetwork().GetId()
	if !created.GetNetwork().GetSpec().GetAttachable() {
		t.Fatal("the network is stored without attachable")
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		n := &pb.Node{Id: "n1", Description: &pb.NodeDescription{Hostname: "host-one"}}
		return firstErr(tx.CreateNode(n),
			tx.CreateTask(attachedTask("a1", "web", "n1", id, "10.7.0.2/24")),
			tx.CreateTask(attachedTask("a2", "cache", "n2", id, "10.7.0.3/24")))
	})
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.GetNetwork(ctx, &pb.GetNetworkRequest{NetworkId: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range got.GetAttachments() {
		names = append(names, a.GetSpec().GetAttachment().GetContainerId()+"@"+a.GetNodeId())
	}
	if strings.Join(names, " ") != "cache@n2 web@n1" {
		t.Errorf("inspect lists attachments %v; want cache@n2 web@n1", names)
	}

	_, err = s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "shared"})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "standalone containers attached: cache on n2, web on host-one") {
		t.Fatalf("rm of a network with containers: %v; want FailedPrecondition naming them and their nodes", err)
	}

	for _, r := range []*pb.ListTasksRequest{{}, {NodeIds: []string{"n1"}}} {
		l, err := s.ListTasks(ctx, r)
		if err != nil || len(l.GetTasks()) != 0 {
			t.Errorf("ListTasks(%v) = %v, %v; want no attachment listed", r, l.GetTasks(), err)
		}
	}

	if _, err := s.execTarget(ctx, "a1"); code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "standalone container web") {
		t.Errorf("exec into an attachment: %v; want FailedPrecondition naming the container", err)
	}
	evs := &eventNames{st: st, services: map[string]string{}}
	var a1 *pb.Task
	st.View(func(tx store.ReadTx) { a1 = tx.GetTask("a1") })
	if ev := evs.taskEvent(store.Event{Kind: store.EventCreate, Object: a1}, a1); ev.GetName() != "web" || ev.GetAttributes()["container"] != "web" || ev.GetAttributes()["service"] != "" {
		t.Errorf("event of an attachment %v: want it named after the container, of no service", ev)
	}

	// The containers end: the network goes.
	err = st.Update(ctx, func(tx store.Tx) error { return firstErr(tx.DeleteTask("a1"), tx.DeleteTask("a2")) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "shared"}); err != nil {
		t.Fatalf("rm once the containers ended: %v", err)
	}
}
