package dispatcher

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	"berth/overlay/allocator"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// attachHarness is a dispatcher with the leader's address allocator
// beside it, three worker nodes and two networks: "att" (attachable, a
// /29: five addresses) and "plain" (not attachable). It returns the
// networks' IDs.
func attachHarness(t *testing.T) (h *harness, att, plain string) {
	t.Helper()
	h = newHarness(t, nil)
	nets := map[string]*pb.Network{
		"att":   {Id: "net-att", Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "att"}, Attachable: true, Subnet: "10.9.9.0/29"}},
		"plain": {Id: "net-plain", Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "plain"}}},
	}
	h.update(func(tx store.Tx) error {
		if err := tx.CreateCluster(&pb.Cluster{Id: "c1", Spec: &pb.ClusterSpec{}}); err != nil {
			return err
		}
		for _, id := range []string{"n1", "n2", "n3"} {
			if err := tx.CreateNode(workerNode(id)); err != nil {
				return err
			}
		}
		for _, name := range []string{"att", "plain"} {
			if err := allocator.CreateNetwork(tx, "c1", nets[name]); err != nil {
				return err
			}
		}
		return nil
	})
	a, err := allocator.New(allocator.Config{Store: h.st, ClusterID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			t.Errorf("allocator: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return h, nets["att"].GetId(), nets["plain"].GetId()
}

func attachReq(container string, nets ...string) *pb.AttachNetworkRequest {
	req := &pb.AttachNetworkRequest{ContainerId: container}
	for _, n := range nets {
		req.Networks = append(req.Networks, &pb.NetworkAttachment{Target: n, Aliases: []string{container + "-alias"}})
	}
	return req
}

func (h *harness) attach(node string, req *pb.AttachNetworkRequest) (*pb.Task, error) {
	r, err := h.client().AttachNetwork(as(context.Background(), node), req)
	return r.GetTask(), err
}

func (h *harness) detach(node, id string) error {
	_, err := h.client().DetachNetwork(as(context.Background(), node), &pb.DetachNetworkRequest{AttachmentId: id})
	return err
}

func (h *harness) taskCount() int {
	var n int
	h.st.View(func(tx store.ReadTx) { ts, _ := tx.FindTasks(store.All); n = len(ts) })
	return n
}

// Refusals name what is wrong and the fix, and store nothing.
func TestAttachNetworkRefusals(t *testing.T) {
	t.Parallel()
	h, _, _ := attachHarness(t)
	for _, c := range []struct {
		name string
		req  *pb.AttachNetworkRequest
		code string
		msg  string
	}{
		{"unknown network", attachReq("web", "att", "nope"), "NotFound", "network nope not found"},
		{"not attachable", attachReq("web", "plain"), "FailedPrecondition",
			"network plain was created without --attachable; standalone containers join only attachable networks: berth network create --attachable NAME"},
		{"no container", attachReq("", "att"), "InvalidArgument", "invalid container_id"},
		{"bad container name", attachReq("-x", "att"), "InvalidArgument", "invalid container_id"},
		{"no network", attachReq("web"), "InvalidArgument", "invalid networks: no network given"},
		{"network twice", attachReq("web", "att", "net-att"), "InvalidArgument", "network net-att is listed twice"},
	} {
		_, err := h.attach("n1", c.req)
		if codeOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v; want %s saying %q", c.name, err, c.code, c.msg)
		}
	}
	h.update(func(tx store.Tx) error {
		n := proto.Clone(tx.GetNode("n2")).(*pb.Node)
		n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_DOWN}
		return tx.UpdateNode(n)
	})
	if _, err := h.attach("n2", attachReq("web", "att")); codeOf(err) != "Unavailable" || !strings.Contains(err.Error(), "node n2 is down") {
		t.Errorf("attach from a down node: %v; want Unavailable saying so", err)
	}
	if n := h.taskCount(); n != 0 {
		t.Errorf("refused attachments left %d tasks", n)
	}
}

// An attachment answers with its addresses, on the caller's node; a retry
// answers the same one; only its node may end it, which frees its address.
func TestAttachNetworkAnswersWithAddresses(t *testing.T) {
	t.Parallel()
	h, att, _ := attachHarness(t)
	got, err := h.attach("n1", attachReq("web", "att"))
	if err != nil {
		t.Fatal(err)
	}
	if got.GetNodeId() != "n1" || got.GetServiceId() != "" || got.GetStatus().GetState() != assignedState ||
		got.GetSpec().GetAttachment().GetContainerId() != "web" || got.GetAnnotations().GetName() != "web" {
		t.Fatalf("attachment %v: want web's, assigned on n1, of no service", got)
	}
	nets := got.GetNetworks()
	if len(nets) != 1 || nets[0].GetNetworkId() != att || !slices.Equal(nets[0].GetAliases(), []string{"web-alias"}) ||
		!netip.MustParsePrefix("10.9.9.0/29").Contains(netip.MustParsePrefix(nets[0].GetAddresses()[0]).Addr()) {
		t.Fatalf("attachment networks %v: want an address of att's 10.9.9.0/29 with the alias", nets)
	}
	if tg := got.GetSpec().GetAttachment().GetNetworks()[0].GetTarget(); tg != att {
		t.Errorf("spec target %q: want the network's ID %s", tg, att)
	}

	again, err := h.attach("n1", attachReq("web", "att"))
	if err != nil || again.GetId() != got.GetId() {
		t.Fatalf("retry: %v, %v; want attachment %s again", again.GetId(), err, got.GetId())
	}
	if _, err := h.attach("n1", attachReq("web", "att", "plain")); codeOf(err) != "FailedPrecondition" {
		t.Errorf("the same container on other networks: %v; want FailedPrecondition", err)
	}
	other, err := h.attach("n2", attachReq("web", "att"))
	if err != nil || other.GetId() == got.GetId() {
		t.Fatalf("a container of the same name on n2: %v, %v; want its own attachment", other.GetId(), err)
	}

	if err := h.detach("n2", got.GetId()); codeOf(err) != "PermissionDenied" {
		t.Errorf("n2 detaching n1's attachment: %v; want PermissionDenied", err)
	}
	if h.task(got.GetId()) == nil {
		t.Fatal("a refused detach removed the attachment")
	}
	if err := h.detach("n1", got.GetId()); err != nil {
		t.Fatal(err)
	}
	if h.task(got.GetId()) != nil {
		t.Error("the attachment is still stored after its detach")
	}
	if err := h.detach("n1", got.GetId()); err != nil {
		t.Errorf("detaching a gone attachment: %v; want no error", err)
	}
	// Its address is free again: four more fit beside n2's.
	for i := range 4 {
		if _, err := h.attach("n3", attachReq(fmt.Sprintf("c%d", i), "att")); err != nil {
			t.Fatalf("attachment %d after the detach: %v", i, err)
		}
	}
}

// A full subnet: the attachment is refused with the allocator's reason
// and removed, and takes nothing.
func TestAttachNetworkExhausted(t *testing.T) {
	t.Parallel()
	h, _, _ := attachHarness(t)
	for i := range 5 {
		if _, err := h.attach("n1", attachReq(fmt.Sprintf("c%d", i), "att")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.attach("n1", attachReq("late", "att"))
	if codeOf(err) != "ResourceExhausted" || !strings.Contains(err.Error(), "cannot allocate addresses: ") ||
		!strings.Contains(err.Error(), "10.9.9.0/29 has no free address") {
		t.Fatalf("attach to a full network: %v; want ResourceExhausted with the allocator's reason", err)
	}
	if n := h.taskCount(); n != 5 {
		t.Errorf("%d tasks after the refusal; want the 5 attachments", n)
	}
}

// The agent reports an attachment's status like a task's; a service task
// of another node is refused nothing new.
func TestAttachmentStatusReports(t *testing.T) {
	t.Parallel()
	h, _, _ := attachHarness(t)
	a := h.session("n1")
	got, err := h.attach("n1", attachReq("web", "att"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []pb.TaskState{running, pb.TaskState_TASK_STATE_COMPLETE} {
		if _, err := h.client().UpdateTaskStatus(as(context.Background(), "n1"), &pb.UpdateTaskStatusRequest{
			SessionId: a.sid, Updates: []*pb.TaskStatusUpdate{report(got.GetId(), s)}}); err != nil {
			t.Fatal(err)
		}
		await.True(t, wait, func() bool { return h.task(got.GetId()).GetStatus().GetState() == s }, "attachment not %s", s)
	}
}

// changeLog is every change one session received, in order.
type changeLog struct {
	a   *agent
	all []*pb.AssignmentChange
}

func logOf(a *agent) *changeLog { return &changeLog{a: a, all: a.first.GetChanges()} }

// await returns the first change received so far, or next, that matches.
func (l *changeLog) await(what string, match func(*pb.AssignmentChange) bool) *pb.AssignmentChange {
	l.a.t.Helper()
	for i := 0; ; {
		for ; i < len(l.all); i++ {
			if match(l.all[i]) {
				return l.all[i]
			}
		}
		l.a.t.Logf("%s waits for %s", l.a.node, what)
		l.all = append(l.all, l.a.next().GetChanges()...)
	}
}

func endpointOf(id, net string, ready bool) func(*pb.AssignmentChange) bool {
	return func(c *pb.AssignmentChange) bool {
		ep := c.GetEndpoint()
		return c.GetAction() != pb.AssignmentChange_ACTION_REMOVE && ep.GetServiceId() == id && ep.GetNetworkId() == net &&
			len(ep.GetTasks()) == 1 && ep.GetTasks()[0].GetReady() == ready
	}
}

func removed(kind, id string) func(*pb.AssignmentChange) bool {
	return func(c *pb.AssignmentChange) bool {
		if c.GetAction() != pb.AssignmentChange_ACTION_REMOVE {
			return false
		}
		switch kind {
		case "ep":
			return c.GetEndpoint().GetServiceId() == id
		case "peer":
			return c.GetPeer().GetTaskId() == id
		case "task":
			return c.GetTask().GetId() == id
		}
		return c.GetNetwork().GetId() == id
	}
}

// A standalone container's attachment reaches its node with its network;
// every other node on the network gets it as a peer, and every node gets
// an endpoint that names it (DNS), ready once the agent says it runs.
// A detach takes all of it back.
func TestAttachmentPeersAndEndpoints(t *testing.T) {
	t.Parallel()
	h, att, _ := attachHarness(t)
	// A dnsrr service "db" with a task on n2, its address from the allocator.
	h.update(func(tx store.Tx) error {
		svc := &pb.Service{Id: "db", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "db"},
			Endpoint: &pb.EndpointSpec{Mode: pb.EndpointSpec_MODE_DNSRR}, Networks: []*pb.NetworkAttachment{{Target: att}}}}
		tk := task("db1", "", pb.TaskState_TASK_STATE_PENDING, running)
		tk.ServiceId, tk.Slot, tk.NodeId = "db", 1, ""
		return firstErr(tx.CreateService(svc), tx.CreateTask(tk))
	})
	await.True(t, wait, func() bool { return len(h.task("db1").GetNetworks()) > 0 }, "db1 gets no address")
	h.setTask("db1", func(tk *pb.Task) { tk.NodeId, tk.Status = "n2", &pb.TaskStatus{State: running} })
	n1a, n2a := h.session("n1"), h.session("n2")
	n1, n2 := logOf(n1a), logOf(n2a)

	got, err := h.attach("n1", attachReq("web", "att"))
	if err != nil {
		t.Fatal(err)
	}
	id := got.GetId()
	task := n1.await("the attachment task", func(c *pb.AssignmentChange) bool { return c.GetTask().GetId() == id }).GetTask()
	if task.GetSpec().GetAttachment().GetContainerId() != "web" || len(task.GetNetworks()) != 1 {
		t.Errorf("n1 got attachment %v; want web's with its address", task)
	}
	n1.await("the network", func(c *pb.AssignmentChange) bool { return c.GetNetwork().GetId() == att })
	n1.await("db1 as a peer", func(c *pb.AssignmentChange) bool { return c.GetPeer().GetTaskId() == "db1" })
	n1.await("db's endpoint", func(c *pb.AssignmentChange) bool { return c.GetEndpoint().GetServiceId() == "db" })

	peer := n2.await("the attachment as a peer", func(c *pb.AssignmentChange) bool { return c.GetPeer().GetTaskId() == id }).GetPeer()
	if peer.GetAddress() != got.GetNetworks()[0].GetAddresses()[0] || peer.GetNetworkId() != att {
		t.Errorf("n2's peer %v; want the attachment's address on att", peer)
	}
	ep := n2.await("the attachment's endpoint", endpointOf(id, att, false)).GetEndpoint()
	et := ep.GetTasks()[0]
	if ep.GetServiceName() != "web" || ep.GetMode() != pb.EndpointSpec_MODE_DNSRR || ep.GetVip() != "" || len(ep.GetPorts()) != 0 ||
		!slices.Equal(ep.GetAliases(), []string{"web-alias"}) || et.GetName() != "web" || et.GetTaskId() != id ||
		et.GetAddress() != got.GetNetworks()[0].GetAddresses()[0] || et.GetNodeId() != "n1" {
		t.Errorf("n2's endpoint for web %v; want dnsrr named web, its alias and its one task, no VIP, no ports", ep)
	}

	// The agent wired it: the name answers.
	if _, err := h.client().UpdateTaskStatus(as(context.Background(), "n1"), &pb.UpdateTaskStatusRequest{
		SessionId: n1a.sid, Updates: []*pb.TaskStatusUpdate{report(id, running)}}); err != nil {
		t.Fatal(err)
	}
	n2.await("the endpoint ready", endpointOf(id, att, true))
	n1.await("its own endpoint ready", endpointOf(id, att, true))

	// Its node down: the attachment stays (nothing replaces it) but leaves
	// DNS until the node is back.
	setNodeState := func(st pb.NodeStatus_State) {
		h.update(func(tx store.Tx) error {
			n := proto.Clone(tx.GetNode("n1")).(*pb.Node)
			n.Status = &pb.NodeStatus{State: st}
			return tx.UpdateNode(n)
		})
	}
	n2.all = nil // only what comes from now on
	setNodeState(pb.NodeStatus_STATE_DOWN)
	n2.await("the endpoint not ready while its node is down", endpointOf(id, att, false))
	n2.all = nil
	setNodeState(pb.NodeStatus_STATE_READY)
	n2.await("the endpoint ready again", endpointOf(id, att, true))

	if err := h.detach("n1", id); err != nil {
		t.Fatal(err)
	}
	n2.await("the endpoint gone", removed("ep", id))
	n2.await("the peer gone", removed("peer", id))
	n1.await("the task gone", removed("task", id))
	n1.await("the network gone from n1", removed("net", att))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// An agent that stops waiting before the allocator answers (here: none
// runs) leaves no attachment behind.
func TestAttachNetworkGivenUpLeavesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.update(func(tx store.Tx) error {
		return firstErr(tx.CreateNode(workerNode("n1")), tx.CreateNetwork(&pb.Network{Id: "net-att", Subnet: "10.9.9.0/29",
			Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "att"}, Attachable: true}}))
	})
	ctx, cancel := context.WithTimeout(as(context.Background(), "n1"), 300*time.Millisecond)
	defer cancel()
	_, err := h.client().AttachNetwork(ctx, attachReq("web", "att"))
	if codeOf(err) != "DeadlineExceeded" {
		t.Fatalf("attach with no allocator: %v; want DeadlineExceeded", err)
	}
	await.True(t, wait, func() bool { return h.taskCount() == 0 }, "the unanswered attachment is still stored")
}

// Two calls for one container at once (an agent's retry racing its first
// call) get one attachment.
func TestAttachNetworkConcurrentRetry(t *testing.T) {
	t.Parallel()
	h, _, _ := attachHarness(t)
	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := h.attach("n1", attachReq("web", "att"))
			if err != nil {
				t.Error(err)
			}
			ids[i] = got.GetId()
		}()
	}
	wg.Wait()
	if ids[0] == "" || slices.ContainsFunc(ids, func(id string) bool { return id != ids[0] }) {
		t.Fatalf("concurrent attachments of one container: %v; want one ID", ids)
	}
	if n := h.taskCount(); n != 1 {
		t.Errorf("%d tasks; want one attachment", n)
	}
}
