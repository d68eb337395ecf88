package dispatcher

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/ca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const (
	assignedState = pb.TaskState_TASK_STATE_ASSIGNED
	pending       = pb.TaskState_TASK_STATE_PENDING
	starting      = pb.TaskState_TASK_STATE_STARTING
	running       = pb.TaskState_TASK_STATE_RUNNING
	shutdown      = pb.TaskState_TASK_STATE_SHUTDOWN
	failed        = pb.TaskState_TASK_STATE_FAILED
)

// seed stores two nodes with tasks and secrets:
//
//	n1: t1 (running, secret s1), t4 (running, desired shutdown: still to stop),
//	    t3 (pending: not yet assigned), t5 (shut down, desired shutdown: gone)
//	n2: t2 (running, secret s2)
func seed(h *harness) {
	h.update(func(tx store.Tx) error {
		for _, n := range []*pb.Node{workerNode("n1"), workerNode("n2")} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		for _, s := range []*pb.Secret{secret("s1", "one"), secret("s2", "two"), secret("s3", "three")} {
			if err := tx.CreateSecret(s); err != nil {
				return err
			}
		}
		for _, t := range []*pb.Task{
			task("t1", "n1", running, running, "s1"),
			task("t2", "n2", running, running, "s2"),
			task("t3", "n1", pending, running, "s3"),
			task("t4", "n1", running, shutdown),
			task("t5", "n1", shutdown, shutdown, "s3"),
		} {
			if err := tx.CreateTask(t); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestSessionFirstMessageIsTheNodesFullSet(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	m := a.first
	if !m.GetFull() || m.GetSessionId() == "" || m.GetNodeId() != "n1" {
		t.Fatalf("first message: full=%v session=%q node=%q; want full, a session ID, node n1", m.GetFull(), m.GetSessionId(), m.GetNodeId())
	}
	if got := m.GetHeartbeatPeriod().AsDuration(); got != time.Second {
		t.Errorf("heartbeat period %s, want 1s", got)
	}
	if len(m.GetManagers()) != 1 || m.GetManagers()[0].GetAddr() != "10.0.0.1:4242" {
		t.Errorf("managers %v, want 10.0.0.1:4242", m.GetManagers())
	}
	if !slices.Equal(m.GetInsecureRegistries(), []string{"registry.local:5000"}) || string(m.GetGossipKey()) != "gossip-key" ||
		!slices.Equal(m.GetGossipPeers(), []string{"10.0.0.1:7946"}) {
		t.Errorf("settings: registries %v, gossip key %q, peers %v", m.GetInsecureRegistries(), m.GetGossipKey(), m.GetGossipPeers())
	}
	// Only n1's assigned tasks, only the secret they need, secret first.
	want := []string{"secret:s1=one", "task:t1", "task:t4"}
	if got := describe(m); !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	for _, c := range m.GetChanges() {
		if tk := c.GetTask(); tk != nil && tk.GetId() == "t4" && tk.GetDesiredState() != shutdown {
			t.Errorf("t4 sent with desired state %s, want shutdown so that the agent stops it", tk.GetDesiredState())
		}
	}
	n := h.node("n1")
	if n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
		t.Errorf("node n1 is %s after its session opened, want READY", n.GetStatus().GetState())
	}
	d := n.GetDescription()
	if d.GetHostname() != "n1-host" || d.GetAddr() != "192.0.2.10" || d.GetPlatform().GetOs() != "linux" ||
		d.GetResources().GetNanoCpus() != 2e9 || d.GetEngineLabels()["zone"] != "a" {
		t.Errorf("node description not recorded: %v", d)
	}
	if h.node("n2").GetStatus().GetState() == pb.NodeStatus_STATE_READY {
		t.Error("n2 is READY without a session")
	}
}

func TestSessionCreatesAMissingNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.session("fresh")
	if len(a.first.GetChanges()) != 0 {
		t.Errorf("a node without tasks got %v", describe(a.first))
	}
	if n := h.node("fresh"); n.GetStatus().GetState() != pb.NodeStatus_STATE_READY || n.GetRole() != pb.NodeSpec_ROLE_WORKER {
		t.Fatalf("node not created READY worker: %v", n)
	}
}

func TestSessionStreamsChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a1, a2 := h.session("n1"), h.session("n2")

	// A new task on n1 with a secret it lacks: the data comes first.
	h.update(func(tx store.Tx) error { return tx.CreateTask(task("t6", "n1", assignedState, running, "s2")) })
	if got, want := describe(a1.next()), []string{"secret:s2=two", "task:t6"}; !slices.Equal(got, want) {
		t.Fatalf("after assigning t6: %v, want %v", got, want)
	}
	// A status the agent reported is not echoed back; a desired state is.
	h.setTask("t6", func(t *pb.Task) { t.Status.State = running })
	h.setTask("t6", func(t *pb.Task) { t.DesiredState = shutdown })
	m := a1.next()
	if got, want := describe(m), []string{"task:t6"}; !slices.Equal(got, want) || m.GetChanges()[0].GetTask().GetDesiredState() != shutdown {
		t.Fatalf("after desired shutdown: %v, want %v with desired shutdown", got, want)
	}
	// Stopped and meant to stop: it leaves, and so does the secret only it used.
	h.setTask("t6", func(t *pb.Task) { t.Status.State = shutdown })
	if got, want := describe(a1.next()), []string{"rm-task:t6", "rm-secret:s2"}; !slices.Equal(got, want) {
		t.Fatalf("after t6 shut down: %v, want %v", got, want)
	}
	// Moved to another node: removed here, assigned there with its secret.
	h.setTask("t1", func(t *pb.Task) { t.NodeId = "n2" })
	if got, want := describe(a1.next()), []string{"rm-task:t1", "rm-secret:s1"}; !slices.Equal(got, want) {
		t.Fatalf("n1 after t1 moved: %v, want %v", got, want)
	}
	if got, want := describe(a2.next()), []string{"secret:s1=one", "task:t1"}; !slices.Equal(got, want) {
		t.Fatalf("n2 after t1 moved: %v, want %v", got, want)
	}
	// Deleted.
	h.update(func(tx store.Tx) error { return tx.DeleteTask("t4") })
	if got, want := describe(a1.next()), []string{"rm-task:t4"}; !slices.Equal(got, want) {
		t.Fatalf("after t4 deleted: %v, want %v", got, want)
	}
	// A task not yet assigned (pending) reaches nobody, even with node_id set.
	h.setTask("t3", func(t *pb.Task) { t.Spec.Container.Image = "other" })
	h.update(func(tx store.Tx) error { return tx.CreateTask(task("t7", "n1", assignedState, running)) })
	if got, want := describe(a1.next()), []string{"task:t7"}; !slices.Equal(got, want) {
		t.Fatalf("after t3 changed and t7 assigned: %v, want %v", got, want)
	}
}

func TestSessionCoalescesChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.BatchWindow = 200 * time.Millisecond })
	a := h.session("n1")
	const n = 30
	for i := range n {
		h.update(func(tx store.Tx) error {
			return tx.CreateTask(task("t"+string(rune('a'+i)), "n1", assignedState, running))
		})
	}
	got, msgs := 0, 0
	for got < n {
		got += len(a.next().GetChanges())
		msgs++
	}
	if got != n || msgs >= n {
		t.Fatalf("%d separate writes reached the agent as %d changes in %d messages; want %d changes coalesced into fewer messages", n, got, msgs, n)
	}
}

// TestNodeRemovedEndsSession: removing a node ends its session; its
// certificate opens no new one, heartbeats nothing, and the node is not
// created again.
func TestNodeRemovedEndsSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	h.update(func(tx store.Tx) error { return tx.DeleteNode("n1") })
	const removed = "node n1 was removed from the cluster; join again with a token"
	if err := a.ended(); codeOf(err) != "PermissionDenied" || status.Convert(err).Message() != removed {
		t.Fatalf("session of a removed node ended with %v, want PermissionDenied: %s", err, removed)
	}
	if _, err := h.open("n1"); codeOf(err) != "PermissionDenied" || status.Convert(err).Message() != removed {
		t.Fatalf("a new session of the removed node: %v, want PermissionDenied: %s", err, removed)
	}
	if _, err := a.heartbeat(); codeOf(err) != "PermissionDenied" {
		t.Fatalf("heartbeat of the removed node: %v, want PermissionDenied", err)
	}
	if n := h.node("n1"); n != nil {
		t.Fatalf("the removed node was created again: %v", n)
	}
	// A node that was never there is created by its first session, as ever.
	h.session("n9")
	if h.node("n9") == nil {
		t.Fatal("a new node's session did not record it")
	}
}

// TestNodeReadyNeverCreatesARemovedNode: the session's write itself
// refuses a removed node, so a session whose node is removed after its
// identity was checked does not bring the node back.
func TestNodeReadyNeverCreatesARemovedNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.update(func(tx store.Tx) error {
		if err := tx.CreateNode(workerNode("n1")); err != nil {
			return err
		}
		return tx.DeleteNode("n1")
	})
	id := ca.Identity{NodeID: "n1", Role: ca.RoleWorker}
	err := h.st.Update(context.Background(), h.d.nodeReady(context.Background(), id, nil))
	if codeOf(err) != "PermissionDenied" || h.node("n1") != nil {
		t.Fatalf("nodeReady of a removed node: %v, node %v; want PermissionDenied and no node", err, h.node("n1"))
	}
}

func TestSessionWithoutDescriptionKeepsTheStoredOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.session("n1")
	ctx, cancel := context.WithCancel(as(context.Background(), "n1"))
	defer cancel()
	stream, err := h.client().Session(ctx, &pb.SessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := h.node("n1").GetDescription().GetHostname(); got != "n1-host" {
		t.Errorf("hostname %q after a session without description, want n1-host kept", got)
	}
}

// TestSessionCarriesTheDesiredRole: the first message says the node's
// desired role; a change of it (promote, demote) is sent on, and other
// changes to the Node are not news.
func TestSessionCarriesTheDesiredRole(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	if a.first.DesiredRole == nil || a.first.GetDesiredRole() != pb.NodeSpec_ROLE_WORKER {
		t.Fatalf("first message desired role %v, want worker", a.first.DesiredRole)
	}
	setNode := func(change func(*pb.Node)) {
		h.update(func(tx store.Tx) error {
			n := proto.Clone(tx.GetNode("n1")).(*pb.Node)
			change(n)
			return tx.UpdateNode(n)
		})
	}
	setNode(func(n *pb.Node) { n.Spec.Availability = pb.NodeSpec_AVAILABILITY_PAUSE })
	setNode(func(n *pb.Node) { n.Spec.DesiredRole = pb.NodeSpec_ROLE_MANAGER })
	if got := a.nextRole(); got != pb.NodeSpec_ROLE_MANAGER {
		t.Fatalf("after promote the session says %v, want manager", got)
	}
	setNode(func(n *pb.Node) { n.Spec.DesiredRole = pb.NodeSpec_ROLE_WORKER })
	if got := a.nextRole(); got != pb.NodeSpec_ROLE_WORKER {
		t.Fatalf("after demote the session says %v, want worker", got)
	}
}

// TestSessionCarriesRotatedGossipKeys: each step of a gossip key rotation
// reaches a live session as the key to encrypt with and the keys to
// accept, so its agent changes keys without a new session.
func TestSessionCarriesRotatedGossipKeys(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	primary, accept := "k1", []string(nil)
	h := newHarness(t, func(c *Config) {
		c.HeartbeatPeriod = func() time.Duration { return 50 * time.Millisecond }
		c.GossipKeys = func() ([]byte, [][]byte) {
			mu.Lock()
			defer mu.Unlock()
			var acc [][]byte
			for _, a := range accept {
				acc = append(acc, []byte(a))
			}
			return []byte(primary), acc
		}
	})
	a := h.session("n1")
	if got := keysOf(a.first); got != "k1 []" {
		t.Fatalf("first message keys %s, want k1 []", got)
	}
	for _, step := range []struct {
		primary string
		accept  []string
	}{{"k1", []string{"k2"}}, {"k2", []string{"k1"}}, {"k2", nil}} {
		mu.Lock()
		primary, accept = step.primary, step.accept
		mu.Unlock()
		want := fmt.Sprint(step.primary, " ", step.accept)
		timeout := time.After(wait)
		for got := ""; got != want; {
			select {
			case m := <-a.msgs:
				if len(m.GetGossipKey()) > 0 {
					got = keysOf(m)
				}
			case err := <-a.err:
				t.Fatalf("session ended: %v", err)
			case <-timeout:
				t.Fatalf("the session did not carry keys %s (last %s)", want, got)
			}
		}
	}
}

func keysOf(m *pb.SessionMessage) string {
	var acc []string
	for _, k := range m.GetGossipAcceptKeys() {
		acc = append(acc, string(k))
	}
	return fmt.Sprint(string(m.GetGossipKey()), " ", acc)
}
