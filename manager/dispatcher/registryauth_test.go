package dispatcher

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

const regPass = "registry-pass-42"

func privateTask(id, node string, sealed []byte) *pb.Task {
	t := task(id, node, assignedState, running)
	t.Spec.Container.Image = "reg.example.com/team/app:v1"
	t.Spec.Container.RegistryAuth = &pb.RegistryAuth{Server: "reg.example.com", Username: "alice", SealedPassword: sealed}
	return t
}

// sentTask finds task id among a message's changes.
func sentTask(m *pb.SessionMessage, id string) *pb.Task {
	for _, c := range m.GetChanges() {
		if c.GetTask().GetId() == id {
			return c.GetTask()
		}
	}
	return nil
}

func carries(t *testing.T, m proto.Message, secret []byte) bool {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, secret)
}

// TestRegistryPasswordOnlyToItsNode: the agent of the node a task is
// assigned to receives the registry password in clear, in the full set and
// in deltas; other nodes receive nothing of it; the store keeps it sealed;
// sealed bytes never go to an agent.
func TestRegistryPasswordOnlyToItsNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	sealed := seal([]byte(regPass))
	h.update(func(tx store.Tx) error {
		for _, n := range []*pb.Node{workerNode("n1"), workerNode("n2")} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		for _, tk := range []*pb.Task{privateTask("p1", "n1", sealed), task("plain", "n2", running, running)} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	stored := proto.Clone(h.task("p1")).(*pb.Task)
	a1, a2 := h.session("n1"), h.session("n2")

	check := func(what string, tk *pb.Task) {
		t.Helper()
		ra := tk.GetSpec().GetContainer().GetRegistryAuth()
		if ra.GetPassword() != regPass || ra.GetUsername() != "alice" || ra.GetServer() != "reg.example.com" || len(ra.GetSealedPassword()) != 0 {
			t.Errorf("%s: credentials %v, want server, user and the clear password without sealed bytes", what, ra)
		}
	}
	check("full set of n1", sentTask(a1.first, "p1"))
	if carries(t, a2.first, []byte(regPass)) || carries(t, a2.first, sealed) {
		t.Fatalf("n2 received the password of a task on n1: %v", a2.first)
	}

	// Deltas: a new private task on n1 and a plain one on n2 in one write.
	h.update(func(tx store.Tx) error {
		if err := tx.CreateTask(privateTask("p2", "n1", sealed)); err != nil {
			return err
		}
		return tx.CreateTask(task("plain2", "n2", assignedState, running))
	})
	m1 := a1.next()
	check("delta to n1", sentTask(m1, "p2"))
	m2 := a2.next()
	if sentTask(m2, "plain2") == nil || carries(t, m2, []byte(regPass)) || carries(t, m2, sealed) {
		t.Fatalf("n2's delta: %v; want plain2 and no password", m2)
	}

	// The store still holds the password sealed only.
	if got := h.task("p1"); !proto.Equal(got, stored) {
		t.Fatalf("sending the task changed the stored one:\n got %v\nwant %v", got, stored)
	}
	for _, id := range []string{"p1", "p2"} {
		if ra := h.task(id).GetSpec().GetContainer().GetRegistryAuth(); ra.GetPassword() != "" || !bytes.Equal(ra.GetSealedPassword(), sealed) {
			t.Errorf("stored credentials of %s: %v, want the sealed password only", id, ra)
		}
	}

	// A password that cannot be opened (another cluster key) goes out
	// neither sealed nor guessed: the agent gets user and server only.
	h.update(func(tx store.Tx) error { return tx.CreateTask(privateTask("p3", "n1", []byte("foreign-bytes"))) })
	sent := sentTask(a1.next(), "p3")
	if ra := sent.GetSpec().GetContainer().GetRegistryAuth(); ra.GetPassword() != "" || len(ra.GetSealedPassword()) != 0 || ra.GetUsername() != "alice" {
		t.Fatalf("unopenable password sent as %v; want user only", ra)
	}
}
