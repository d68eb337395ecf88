package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func onNet(id, node, netID, addr string, state pb.TaskState) *pb.Task {
	t := task(id, node, state, pb.TaskState_TASK_STATE_RUNNING)
	t.Networks = []*pb.NetworkAttachmentStatus{{NetworkId: netID, Addresses: []string{addr}}}
	return t
}

// describeChanges names each change: "+net a", "+peer a/t2@198.18.0.12",
// "-peer a/t2", "-net a".
func describeChanges(cs []*pb.AssignmentChange) []string {
	var out []string
	for _, c := range cs {
		sign := "+"
		if c.GetAction() == pb.AssignmentChange_ACTION_REMOVE {
			sign = "-"
		}
		switch {
		case c.GetNetwork() != nil:
			out = append(out, sign+"net "+c.GetNetwork().GetId())
		case c.GetPeer() != nil && sign == "+":
			p := c.GetPeer()
			out = append(out, sign+"peer "+p.GetNetworkId()+"/"+p.GetTaskId()+"@"+p.GetNodeAddr())
		case c.GetPeer() != nil:
			out = append(out, sign+"peer "+c.GetPeer().GetNetworkId()+"/"+c.GetPeer().GetTaskId())
		case c.GetEndpoint() != nil:
			out = append(out, sign+"ep "+c.GetEndpoint().GetServiceId()+"/"+c.GetEndpoint().GetNetworkId())
		}
	}
	return out
}

func TestPeerSetFollowsTasks(t *testing.T) {
	st := store.New(nil)
	mustUpdate := func(cb func(store.Tx) error) {
		t.Helper()
		if err := st.Update(context.Background(), cb); err != nil {
			t.Fatal(err)
		}
	}
	running := pb.TaskState_TASK_STATE_RUNNING
	mustUpdate(func(tx store.Tx) error {
		for id, addr := range map[string]string{"n1": "198.18.0.11", "n2": "198.18.0.12:4242", "n3": "198.18.0.13"} {
			n := workerNode(id)
			n.Description = &pb.NodeDescription{Addr: addr}
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		for _, n := range []*pb.Network{{Id: "a", Vni: 4097, Subnet: "10.0.0.0/24"}, {Id: "b", Vni: 4098, Subnet: "10.0.1.0/24"}} {
			if err := tx.CreateNetwork(n); err != nil {
				return err
			}
		}
		for _, tk := range []*pb.Task{
			onNet("t1", "n1", "a", "10.0.0.2/24", running),
			onNet("t2", "n2", "a", "10.0.0.3/24", running),
			onNet("t3", "n3", "b", "10.0.1.2/24", running),                          // another network
			onNet("t4", "n3", "a", "10.0.0.4/24", pb.TaskState_TASK_STATE_COMPLETE), // ended
		} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	mine := func() map[string]*pb.Task {
		out := map[string]*pb.Task{}
		st.View(func(tx store.ReadTx) { out["t1"] = tx.GetTask("t1") })
		return out
	}
	p := newPeerSet("n1")
	var got []string
	st.View(func(tx store.ReadTx) { got = describeChanges(p.full(tx, mine())) })
	if want := []string{"+net a", "+peer a/t2@198.18.0.12"}; !slices.Equal(got, want) {
		t.Fatalf("full = %v, want %v", got, want)
	}

	// t2 ends, t5 starts on n3: one peer goes, one comes.
	mustUpdate(func(tx store.Tx) error {
		t2 := proto.Clone(tx.GetTask("t2")).(*pb.Task)
		t2.Status.State = pb.TaskState_TASK_STATE_FAILED
		if err := tx.UpdateTask(t2); err != nil {
			return err
		}
		return tx.CreateTask(onNet("t5", "n3", "a", "10.0.0.5/24", pb.TaskState_TASK_STATE_ASSIGNED))
	})
	st.View(func(tx store.ReadTx) {
		add, remove := p.changes(tx, mine())
		got = describeChanges(append(add, remove...))
	})
	if want := []string{"+peer a/t5@198.18.0.13", "-peer a/t2"}; !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}

	// The node's last task on a leaves: its peers, then the network, go.
	st.View(func(tx store.ReadTx) {
		add, remove := p.changes(tx, map[string]*pb.Task{})
		got = describeChanges(append(add, remove...))
	})
	if want := []string{"-peer a/t5", "-net a"}; !slices.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
}

func TestPeerSetSendsServiceEndpoints(t *testing.T) {
	st := store.New(nil)
	mustUpdate := func(cb func(store.Tx) error) {
		t.Helper()
		if err := st.Update(context.Background(), cb); err != nil {
			t.Fatal(err)
		}
	}
	running := pb.TaskState_TASK_STATE_RUNNING
	web := &pb.Service{Id: "svc", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "web"},
		Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}},
		Endpoint: &pb.Endpoint{VirtualIps: []*pb.VirtualIP{{NetworkId: "a", Addr: "10.0.0.9/24"}}}}
	mustUpdate(func(tx store.Tx) error {
		for id, addr := range map[string]string{"n1": "198.18.0.11", "n2": "198.18.0.12"} {
			n := workerNode(id)
			n.Description = &pb.NodeDescription{Addr: addr}
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		if err := tx.CreateNetwork(&pb.Network{Id: "a", Vni: 4097, Subnet: "10.0.0.0/24"}); err != nil {
			return err
		}
		if err := tx.CreateService(web); err != nil {
			return err
		}
		t1 := onNet("t1", "n1", "a", "10.0.0.2/24", running)
		t1.Slot, t1.Networks[0].Aliases = 1, []string{"www"}
		t2 := onNet("t2", "n2", "a", "10.0.0.3/24", running) // failing its health check
		t2.Slot = 2
		t2.Status.Container = &pb.ContainerStatus{Health: pb.ContainerStatus_HEALTH_UNHEALTHY}
		t3 := onNet("t3", "n2", "a", "10.0.0.4/24", pb.TaskState_TASK_STATE_ASSIGNED) // not started yet
		t3.Slot = 3
		for _, tk := range []*pb.Task{t1, t2, t3} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	mine := map[string]*pb.Task{}
	st.View(func(tx store.ReadTx) { mine["t1"] = tx.GetTask("t1") })
	p := newPeerSet("n1")
	var full []*pb.AssignmentChange
	st.View(func(tx store.ReadTx) { full = p.full(tx, mine) })
	if got, want := describeChanges(full), []string{"+net a", "+peer a/t2@198.18.0.12", "+peer a/t3@198.18.0.12", "+ep svc/a"}; !slices.Equal(got, want) {
		t.Fatalf("full = %v, want %v", got, want)
	}
	ep := full[len(full)-1].GetEndpoint()
	if ep.GetServiceName() != "web" || ep.GetVip() != "10.0.0.9/24" || !slices.Equal(ep.GetAliases(), []string{"www"}) ||
		len(ep.GetPorts()) != 1 || ep.GetPorts()[0].GetPublishedPort() != 8080 {
		t.Fatalf("endpoint = %v", ep)
	}
	var got []string
	for _, et := range ep.GetTasks() {
		got = append(got, fmt.Sprintf("%s %s %v", et.GetName(), et.GetAddress(), et.GetReady()))
	}
	if want := []string{"web.1.t1 10.0.0.2/24 true", "web.2.t2 10.0.0.3/24 false", "web.3.t3 10.0.0.4/24 false"}; !slices.Equal(got, want) {
		t.Fatalf("endpoint tasks = %v, want %v", got, want)
	}

	// Switched to dnsrr: the VIP is no longer sent.
	mustUpdate(func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("svc")).(*pb.Service)
		s.Spec.Endpoint.Mode = pb.EndpointSpec_MODE_DNSRR
		return tx.UpdateService(s)
	})
	var add, remove []*pb.AssignmentChange
	st.View(func(tx store.ReadTx) { add, remove = p.changes(tx, mine) })
	if got := describeChanges(append(add, remove...)); !slices.Equal(got, []string{"+ep svc/a"}) || add[0].GetEndpoint().GetVip() != "" {
		t.Fatalf("after dnsrr: %v %v", got, add)
	}

	// The node's last task on a leaves: the service publishes 8080 on
	// every node (ingress), so its endpoint stays, the network goes.
	st.View(func(tx store.ReadTx) { add, remove = p.changes(tx, map[string]*pb.Task{}) })
	if got, want := describeChanges(append(add, remove...)), []string{"-peer a/t2", "-peer a/t3", "-net a"}; !slices.Equal(got, want) {
		t.Fatalf("leave = %v, want %v", got, want)
	}

	// Published in host mode only, it is no business of a node without
	// its tasks: the endpoint goes.
	mustUpdate(func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("svc")).(*pb.Service)
		s.Spec.Endpoint.Ports[0].PublishMode = pb.PortConfig_PUBLISH_MODE_HOST
		return tx.UpdateService(s)
	})
	st.View(func(tx store.ReadTx) { add, remove = p.changes(tx, map[string]*pb.Task{}) })
	if got, want := describeChanges(append(add, remove...)), []string{"-ep svc/a"}; !slices.Equal(got, want) {
		t.Fatalf("host mode = %v, want %v", got, want)
	}
}

// TestPeerSetSendsIngressEverywhere: a node running no task at all learns
// the services that publish ingress ports, with their tasks' nodes, which
// its routing mesh forwards to.
func TestPeerSetSendsIngressEverywhere(t *testing.T) {
	st := store.New(nil)
	web := &pb.Service{Id: "svc", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "web"},
		Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}}}
	quiet := &pb.Service{Id: "quiet", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "quiet"}}}
	err := st.Update(context.Background(), func(tx store.Tx) error {
		n := workerNode("n2")
		n.Description = &pb.NodeDescription{Addr: "198.18.0.12:4242"}
		return errors.Join(tx.CreateNode(n), tx.CreateNode(workerNode("n3")),
			tx.CreateNetwork(&pb.Network{Id: "a", Vni: 4097, Subnet: "10.0.0.0/24"}),
			tx.CreateService(web), tx.CreateService(quiet),
			tx.CreateTask(onNet("t1", "n2", "a", "10.0.0.2/24", pb.TaskState_TASK_STATE_RUNNING)),
			tx.CreateTask(func() *pb.Task {
				tk := onNet("q1", "n2", "a", "10.0.0.3/24", pb.TaskState_TASK_STATE_RUNNING)
				tk.ServiceId = "quiet"
				return tk
			}()))
	})
	if err != nil {
		t.Fatal(err)
	}
	var full []*pb.AssignmentChange
	st.View(func(tx store.ReadTx) { full = newPeerSet("n3").full(tx, map[string]*pb.Task{}) })
	if got, want := describeChanges(full), []string{"+ep svc/a"}; !slices.Equal(got, want) {
		t.Fatalf("full = %v, want %v", got, want)
	}
	tasks := full[0].GetEndpoint().GetTasks()
	if len(tasks) != 1 || tasks[0].GetNodeAddr() != "198.18.0.12" || !tasks[0].GetReady() {
		t.Fatalf("tasks = %v, want t1 ready on 198.18.0.12", tasks)
	}
}
