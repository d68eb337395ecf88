package allocator

import (
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestServicesOnNoNetworkJoinTheDefault(t *testing.T) {
	st := newStore(t)
	create(t, st, service("web"), pendingTask("web", 1), pendingTask("web", 2))
	start(t, st)
	got := waitAllocated(t, st, "web.1", "web.2")

	var def *pb.Network
	st.View(func(tx store.ReadTx) {
		nets, _ := tx.FindNetworks(store.ByName(DefaultNetwork))
		if len(nets) == 1 {
			def = nets[0]
		}
	})
	if def == nil || def.GetSubnet() != "10.0.0.0/16" || def.GetVni() == 0 {
		t.Fatalf("default network %v: want one, 10.0.0.0/16, with a VNI", def)
	}
	sub := netip.MustParsePrefix(def.GetSubnet())
	svc := getService(st, "web")
	vips := svc.GetEndpoint().GetVirtualIps()
	if len(vips) != 1 || vips[0].GetNetworkId() != def.GetId() || !sub.Contains(netip.MustParsePrefix(vips[0].GetAddr()).Addr()) {
		t.Fatalf("service VIPs %v: want one on the default network", vips)
	}
	for id, tk := range got {
		atts := tk.GetNetworks()
		if len(atts) != 1 || atts[0].GetNetworkId() != def.GetId() {
			t.Fatalf("task %s attachments %v: want the default network", id, atts)
		}
		p := netip.MustParsePrefix(atts[0].GetAddresses()[0])
		if p.Bits() != 16 || !sub.Contains(p.Addr()) {
			t.Errorf("task %s address %s: want one of %s with its prefix length", id, p, sub)
		}
		if !proto.Equal(tk.GetEndpoint(), svc.GetEndpoint()) {
			t.Errorf("task %s endpoint %v, want the service's %v", id, tk.GetEndpoint(), svc.GetEndpoint())
		}
		if tk.GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING {
			t.Errorf("task %s state %s: the allocator must leave placement to the assign loop", id, tk.GetStatus().GetState())
		}
	}
	checkUnique(t, st)
}

func TestAnAddressPerNetworkAndAliases(t *testing.T) {
	st := newStore(t)
	front := network(t, st, "front", "")
	back := network(t, st, "back", "192.168.7.0/24")
	create(t, st, service("api", front.GetId(), back.GetId()), pendingTask("api", 1))
	start(t, st)
	tk := waitAllocated(t, st, "api.1")["api.1"]
	atts := tk.GetNetworks()
	if len(atts) != 2 || atts[0].GetNetworkId() != front.GetId() || atts[1].GetNetworkId() != back.GetId() {
		t.Fatalf("attachments %v: want front then back", atts)
	}
	if !strings.HasPrefix(atts[1].GetAddresses()[0], "192.168.7.") || atts[1].GetAliases()[0] != "api-alias" {
		t.Errorf("back attachment %v: want an address of 192.168.7.0/24 and the alias", atts[1])
	}
	await.True(t, wait, func() bool { return len(getService(st, "api").GetEndpoint().GetVirtualIps()) == 2 }, "two VIPs")
	checkUnique(t, st)
}

func TestDNSRRServiceHasNoVIP(t *testing.T) {
	st := newStore(t)
	svc := service("rr")
	svc.Spec.Endpoint = &pb.EndpointSpec{Mode: pb.EndpointSpec_MODE_DNSRR}
	create(t, st, svc, pendingTask("rr", 1))
	start(t, st)
	tk := waitAllocated(t, st, "rr.1")["rr.1"]
	if n := len(getService(st, "rr").GetEndpoint().GetVirtualIps()); n != 0 {
		t.Errorf("dnsrr service has %d VIPs, want none", n)
	}
	if len(tk.GetNetworks()) != 1 {
		t.Errorf("dnsrr task attachments %v: want the default network", tk.GetNetworks())
	}
}

// A /29 has five addresses to give: one VIP and four tasks fill it; the
// fifth task waits with a clear reason and gets the address of one that
// ended.
func TestExhaustionAndReuse(t *testing.T) {
	st := newStore(t)
	small := network(t, st, "small", "10.9.9.0/29")
	objs := []proto.Message{service("s", small.GetId())}
	for i := 1; i <= 5; i++ {
		objs = append(objs, pendingTask("s", i))
	}
	create(t, st, objs...)
	start(t, st)
	got := waitAllocated(t, st, "s.1", "s.2", "s.3", "s.4")
	var fifth *pb.Task
	await.True(t, wait, func() bool {
		fifth = getTask(st, "s.5")
		return fifth.GetStatus().GetErr() != ""
	}, "the fifth task has no reason")
	if e := fifth.GetStatus().GetErr(); !strings.Contains(e, "subnet 10.9.9.0/29 has no free address") || len(fifth.GetNetworks()) != 0 {
		t.Fatalf("fifth task: err %q, networks %v; want no address and a reason naming the subnet", e, fifth.GetNetworks())
	}
	freed := got["s.2"].GetNetworks()[0].GetAddresses()[0]
	setState(t, st, "s.2", pb.TaskState_TASK_STATE_FAILED)
	tk := waitAllocated(t, st, "s.5")["s.5"]
	if a := tk.GetNetworks()[0].GetAddresses()[0]; a != freed {
		t.Errorf("fifth task got %s, want the freed %s", a, freed)
	}
	if tk.GetStatus().GetErr() != "" || tk.GetStatus().GetMessage() != pendingMessage {
		t.Errorf("fifth task status %v: want the reason cleared", tk.GetStatus())
	}
	checkUnique(t, st)
}

// A new term (leader change or restart) rebuilds from the store: it gives
// nothing twice, and frees what ended while no allocator ran.
func TestNewTermRebuildsFromTheStore(t *testing.T) {
	st := newStore(t)
	small := network(t, st, "small", "10.9.9.0/29")
	create(t, st, service("s", small.GetId()), pendingTask("s", 1), pendingTask("s", 2))
	stop := start(t, st)
	before := waitAllocated(t, st, "s.1", "s.2")
	stop()

	setState(t, st, "s.1", pb.TaskState_TASK_STATE_COMPLETE) // ends between terms
	create(t, st, pendingTask("s", 3), pendingTask("s", 4), pendingTask("s", 5))
	start(t, st)
	after := waitAllocated(t, st, "s.3", "s.4", "s.5")
	if a, b := before["s.2"].GetNetworks()[0].GetAddresses()[0], getTask(st, "s.2").GetNetworks()[0].GetAddresses()[0]; a != b {
		t.Errorf("a live task's address changed across terms: %s → %s", a, b)
	}
	vip := getService(st, "s").GetEndpoint().GetVirtualIps()[0].GetAddr()
	for id, tk := range after {
		if a := tk.GetNetworks()[0].GetAddresses()[0]; a == vip || a == before["s.2"].GetNetworks()[0].GetAddresses()[0] {
			t.Errorf("task %s got %s, held by another", id, a)
		}
	}
	checkUnique(t, st)
}

func TestServiceNetworkChangeMovesVIPs(t *testing.T) {
	st := newStore(t)
	a := network(t, st, "a", "")
	b := network(t, st, "b", "")
	create(t, st, service("svc", a.GetId()))
	start(t, st)
	await.True(t, wait, func() bool { return len(getService(st, "svc").GetEndpoint().GetVirtualIps()) == 1 }, "VIP on a")
	update(t, st, func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("svc")).(*pb.Service)
		s.Spec.Networks = []*pb.NetworkAttachment{{Target: b.GetId()}}
		return tx.UpdateService(s)
	})
	await.True(t, wait, func() bool {
		v := getService(st, "svc").GetEndpoint().GetVirtualIps()
		return len(v) == 1 && v[0].GetNetworkId() == b.GetId()
	}, "VIP moved to b")
	// The VIP on a was freed: a task of another service gets it.
	create(t, st, service("other", a.GetId()), pendingTask("other", 1))
	waitAllocated(t, st, "other.1")
	checkUnique(t, st)
}

func TestTaskShutDownBeforeAllocationIsLeftAlone(t *testing.T) {
	st := newStore(t)
	tk := pendingTask("gone", 1) // its service does not exist
	create(t, st, tk, service("web"), pendingTask("web", 1))
	start(t, st)
	waitAllocated(t, st, "web.1")
	if n := getTask(st, "gone.1").GetNetworks(); len(n) != 0 {
		t.Errorf("a task of a missing service got addresses %v", n)
	}
}

// A service that cannot have its VIP keeps its tasks waiting, with the
// reason on each.
func TestNoVIPKeepsTasksWaitingWithAReason(t *testing.T) {
	st := newStore(t)
	small := network(t, st, "small", "10.9.9.0/29")
	objs := []proto.Message{service("full", small.GetId())}
	for i := 1; i <= 4; i++ {
		objs = append(objs, pendingTask("full", i))
	}
	create(t, st, objs...)
	start(t, st)
	waitAllocated(t, st, "full.1", "full.2", "full.3", "full.4")
	create(t, st, service("late", small.GetId()), pendingTask("late", 1))
	await.True(t, wait, func() bool {
		return strings.Contains(getTask(st, "late.1").GetStatus().GetErr(), "no virtual IP for the service: subnet 10.9.9.0/29 has no free address")
	}, "the task of a service without a VIP says why it waits")
	if n := getTask(st, "late.1").GetNetworks(); len(n) != 0 {
		t.Fatalf("a task of a service without a VIP got addresses %v", n)
	}
}
