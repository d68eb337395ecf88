package allocator

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// attachTask is a standalone container's attachment as the dispatcher
// stores it: no service, the asking node, pending.
func attachTask(id, node string, nets ...string) *pb.Task {
	spec := &pb.NetworkAttachmentSpec{ContainerId: id}
	for _, n := range nets {
		spec.Networks = append(spec.Networks, &pb.NetworkAttachment{Target: n, Aliases: []string{id + "-alias"}})
	}
	return &pb.Task{Id: id, NodeId: node, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Annotations: &pb.Annotations{Name: id}, Spec: &pb.TaskSpec{Attachment: spec},
		Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING}}
}

func TestAttachmentGetsAnAddressOnEachNetwork(t *testing.T) {
	st := newStore(t)
	front := network(t, st, "front", "")
	back := network(t, st, "back", "192.168.7.0/24")
	create(t, st, attachTask("c1", "n1", front.GetId(), back.GetId()))
	start(t, st)
	tk := waitAllocated(t, st, "c1")["c1"]
	if s := tk.GetStatus(); s.GetState() != pb.TaskState_TASK_STATE_ASSIGNED || s.GetMessage() != AttachedMessage || tk.GetNodeId() != "n1" {
		t.Fatalf("attachment status %v on node %q: want assigned on its own node n1", s, tk.GetNodeId())
	}
	var nets []string
	for _, a := range tk.GetNetworks() {
		nets = append(nets, a.GetNetworkId())
		if len(a.GetAddresses()) != 1 || !slices.Equal(a.GetAliases(), []string{"c1-alias"}) {
			t.Errorf("attachment on %s: %v; want one address and the alias", a.GetNetworkId(), a)
		}
	}
	if !slices.Equal(nets, []string{front.GetId(), back.GetId()}) {
		t.Fatalf("attachment networks %v, want front then back", nets)
	}
	if !strings.HasPrefix(tk.GetNetworks()[1].GetAddresses()[0], "192.168.7.") {
		t.Errorf("address on back %s: want one of 192.168.7.0/24", tk.GetNetworks()[1].GetAddresses()[0])
	}
	if tk.GetEndpoint() != nil {
		t.Errorf("attachment endpoint %v: a standalone container has no VIP and no ports", tk.GetEndpoint())
	}
	checkUnique(t, st)
}

// Attachments exhaust a subnet like tasks do, with the same reason; a
// deleted attachment's address goes to the next one. A new term keeps
// the live attachments' addresses.
func TestAttachmentExhaustionReuseAndRestart(t *testing.T) {
	st := newStore(t)
	small := network(t, st, "small", "10.9.9.0/29") // 5 addresses beside the gateway
	var objs []proto.Message
	for i := 1; i <= 6; i++ {
		objs = append(objs, attachTask(fmt.Sprintf("c%d", i), "n1", small.GetId()))
	}
	create(t, st, objs[:5]...)
	stop := start(t, st)
	got := waitAllocated(t, st, "c1", "c2", "c3", "c4", "c5")

	create(t, st, objs[5])
	var sixth *pb.Task
	await.True(t, wait, func() bool { sixth = getTask(st, "c6"); return sixth.GetStatus().GetErr() != "" }, "the sixth attachment has no reason")
	if e := sixth.GetStatus().GetErr(); !strings.HasPrefix(e, NoAddresses+": ") || !strings.Contains(e, "subnet 10.9.9.0/29 has no free address") ||
		sixth.GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING {
		t.Fatalf("sixth attachment: status %v; want pending with %q naming the subnet", sixth.GetStatus(), NoAddresses)
	}

	freed := got["c3"].GetNetworks()[0].GetAddresses()[0]
	update(t, st, func(tx store.Tx) error { return tx.DeleteTask("c3") }) // DetachNetwork
	if a := waitAllocated(t, st, "c6")["c6"].GetNetworks()[0].GetAddresses()[0]; a != freed {
		t.Errorf("sixth attachment got %s, want the freed %s", a, freed)
	}
	stop()

	// A new term: the live attachments keep theirs, the freed one is taken.
	update(t, st, func(tx store.Tx) error { return tx.DeleteTask("c1") })
	create(t, st, attachTask("c7", "n2", small.GetId()), attachTask("c8", "n2", small.GetId()))
	start(t, st)
	if a := waitAllocated(t, st, "c7")["c7"].GetNetworks()[0].GetAddresses()[0]; a != got["c1"].GetNetworks()[0].GetAddresses()[0] {
		t.Errorf("after a restart c7 got %s, want c1's freed %s", a, got["c1"].GetNetworks()[0].GetAddresses()[0])
	}
	await.True(t, wait, func() bool { return getTask(st, "c8").GetStatus().GetErr() != "" }, "c8 gets no reason on a full subnet")
	for _, id := range []string{"c2", "c4", "c5"} {
		if a := getTask(st, id).GetNetworks()[0].GetAddresses()[0]; a != got[id].GetNetworks()[0].GetAddresses()[0] {
			t.Errorf("attachment %s moved from %s to %s across terms", id, got[id].GetNetworks()[0].GetAddresses()[0], a)
		}
	}
	checkUnique(t, st)
}

// An attachment whose container ended (the agent's report) frees its
// addresses.
func TestEndedAttachmentFreesItsAddress(t *testing.T) {
	st := newStore(t)
	small := network(t, st, "small", "10.9.9.0/29")
	var objs []proto.Message
	for i := 1; i <= 6; i++ {
		objs = append(objs, attachTask(fmt.Sprintf("c%d", i), "n1", small.GetId()))
	}
	create(t, st, objs...)
	start(t, st)
	waitAllocated(t, st, "c1", "c2", "c3", "c4", "c5")
	setState(t, st, "c2", pb.TaskState_TASK_STATE_COMPLETE)
	waitAllocated(t, st, "c6")
	checkUnique(t, st)
}
