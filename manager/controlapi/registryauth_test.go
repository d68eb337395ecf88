package controlapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const (
	regHost  = "reg.example.com:5000"
	regImage = regHost + "/team/app:v1"
	regPass  = "hunter2-registry-password"
)

// sealingServer is a Server that seals with a real cluster key.
func sealingServer(t *testing.T) (*Server, *store.MemoryStore, []byte) {
	t.Helper()
	s, st := newServer(t)
	key := make([]byte, 32)
	rand.Read(key)
	s.cfg.SealSecret = func(b []byte) ([]byte, error) { return ca.Seal(key, b) }
	return s, st, key
}

func authSpec(name, user, pass string) *pb.ServiceSpec {
	sp := spec(name, 1)
	sp.Task.Container.Image = regImage
	sp.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: regHost, Username: user, Password: pass}
	return sp
}

// storedAuth is the registry auth of a service as the store holds it.
func storedAuth(st *store.MemoryStore, id string) *pb.RegistryAuth {
	var ra *pb.RegistryAuth
	st.View(func(tx store.ReadTx) { ra = tx.GetService(id).GetSpec().GetTask().GetContainer().GetRegistryAuth() })
	return ra
}

func openAuth(t *testing.T, key []byte, ra *pb.RegistryAuth) string {
	t.Helper()
	if ra.GetPassword() != "" {
		t.Fatalf("the store holds the registry password in clear: %v", ra)
	}
	pw, err := ca.Open(key, ra.GetSealedPassword())
	if err != nil {
		t.Fatalf("open the stored password with the cluster key: %v", err)
	}
	return string(pw)
}

// leaks says whether msg carries the password in clear or sealed.
func leaks(t *testing.T, msg proto.Message, sealed []byte) bool {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(regPass)) || bytes.Contains(b, sealed)
}

// watchStream collects what WatchTasks sends.
type watchStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan *pb.WatchTasksResponse
}

func (w *watchStream) Context() context.Context { return w.ctx }
func (w *watchStream) Send(m *pb.WatchTasksResponse) error {
	w.sent <- proto.Clone(m).(*pb.WatchTasksResponse)
	return nil
}

// TestRegistryPasswordNeverReturned: the password is sealed with the
// cluster key at rest and no Control API read returns it, clear or sealed;
// server and username stay visible.
func TestRegistryPasswordNeverReturned(t *testing.T) {
	s, st, key := sealingServer(t)
	ctx := context.Background()
	created, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: authSpec("private", "alice", regPass)})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetService().GetId()

	var raw *pb.Service
	st.View(func(tx store.ReadTx) { raw = tx.GetService(id) })
	rawBytes, _ := proto.Marshal(raw)
	if bytes.Contains(rawBytes, []byte(regPass)) {
		t.Fatal("the stored service holds the registry password in clear")
	}
	sealed := storedAuth(st, id).GetSealedPassword()
	if got := openAuth(t, key, storedAuth(st, id)); got != regPass {
		t.Fatalf("stored password opens to %q, want %q", got, regPass)
	}

	// A task as the orchestrator makes it: a copy of the service's spec.
	err = st.Update(ctx, func(tx store.Tx) error {
		return tx.CreateTask(&pb.Task{Id: "task1", ServiceId: id, Slot: 1, NodeId: "n1", Spec: proto.Clone(raw.GetSpec().GetTask()).(*pb.TaskSpec)})
	})
	if err != nil {
		t.Fatal(err)
	}
	stream := &watchStream{ctx: ctx, sent: make(chan *pb.WatchTasksResponse, 16)}
	wctx, cancel := context.WithCancel(ctx)
	stream.ctx = wctx
	watchDone := make(chan error, 1)
	go func() { watchDone <- s.WatchTasks(&pb.WatchTasksRequest{ServiceIds: []string{id}}, stream) }()
	t.Cleanup(func() { cancel(); <-watchDone })
	first := <-stream.sent

	got, err := s.GetService(ctx, &pb.GetServiceRequest{ServiceId: "private"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListServices(ctx, &pb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.GetTask(ctx, &pb.GetTaskRequest{TaskId: "task1"})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := s.ListTasks(ctx, &pb.ListTasksRequest{ServiceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	// A change to the task reaches watchers through the event path.
	err = st.Update(ctx, func(tx store.Tx) error {
		tk := proto.Clone(tx.GetTask("task1")).(*pb.Task)
		tk.DesiredState = pb.TaskState_TASK_STATE_RUNNING
		return tx.UpdateTask(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
	var event *pb.WatchTasksResponse
	await.True(t, 5*time.Second, func() bool {
		select {
		case event = <-stream.sent:
			return true
		default:
			return false
		}
	}, "WatchTasks sends the task's change")

	for name, msg := range map[string]proto.Message{
		"CreateService": created, "GetService": got, "ListServices": list,
		"GetTask": task, "ListTasks": tasks, "WatchTasks (first)": first, "WatchTasks (event)": event,
	} {
		if leaks(t, msg, sealed) {
			t.Errorf("%s returns the registry password (clear or sealed): %v", name, msg)
		}
	}
	for name, ra := range map[string]*pb.RegistryAuth{
		"GetService": got.GetService().GetSpec().GetTask().GetContainer().GetRegistryAuth(),
		"ListTasks":  tasks.GetTasks()[0].GetSpec().GetContainer().GetRegistryAuth(),
		"WatchTasks": event.GetTasks()[0].GetSpec().GetContainer().GetRegistryAuth(),
	} {
		if ra.GetServer() != regHost || ra.GetUsername() != "alice" {
			t.Errorf("%s shows credentials %v, want server %s and user alice", name, ra, regHost)
		}
	}
	// Reads hand out copies: the store still holds the sealed password.
	if !bytes.Equal(storedAuth(st, id).GetSealedPassword(), sealed) {
		t.Fatal("a read changed the stored credentials")
	}
}

// TestRegistryAuthUpdate: an update that leaves the credentials alone keeps
// them; a new password replaces them; rollback brings the old ones back.
func TestRegistryAuthUpdate(t *testing.T) {
	s, st, key := sealingServer(t)
	ctx := context.Background()
	created, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: authSpec("private", "alice", regPass)})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetService().GetId()
	sealed := storedAuth(st, id).GetSealedPassword()

	// update sends a spec as the CLI does: read back, changed, sent.
	update := func(change func(*pb.ServiceSpec)) (*pb.UpdateServiceResponse, error) {
		cur, err := s.GetService(ctx, &pb.GetServiceRequest{ServiceId: id})
		if err != nil {
			t.Fatal(err)
		}
		sp := proto.Clone(cur.GetService().GetSpec()).(*pb.ServiceSpec)
		change(sp)
		return s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: id, ServiceVersion: cur.GetService().GetMeta().GetVersion(), Spec: sp})
	}

	if _, err := update(func(sp *pb.ServiceSpec) { sp.Replicas = proto.Int64(3) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(storedAuth(st, id).GetSealedPassword(), sealed) {
		t.Fatal("an update without new credentials lost the stored password")
	}

	resp, err := update(func(sp *pb.ServiceSpec) { sp.Task.Container.RegistryAuth.Password = "rotated" })
	if err != nil {
		t.Fatal(err)
	}
	if leaks(t, resp, sealed) || strings.Contains(resp.String(), "rotated") {
		t.Fatalf("UpdateService returns the password: %v", resp)
	}
	if got := openAuth(t, key, storedAuth(st, id)); got != "rotated" {
		t.Fatalf("after a new password the store holds %q", got)
	}

	for _, tc := range []struct {
		name   string
		change func(*pb.ServiceSpec)
		field  string
	}{
		{"other user, no password", func(sp *pb.ServiceSpec) { sp.Task.Container.RegistryAuth.Username = "bob" }, "registry_auth.password"},
		{"sealed bytes from a client", func(sp *pb.ServiceSpec) {
			sp.Task.Container.RegistryAuth.SealedPassword = sealed
		}, "registry_auth.sealed_password"},
		{"image from another registry", func(sp *pb.ServiceSpec) { sp.Task.Container.Image = "ghcr.io/team/app:v2" }, "registry_auth.server"},
	} {
		if _, err := update(tc.change); code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid "+tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	if got := openAuth(t, key, storedAuth(st, id)); got != "rotated" {
		t.Fatalf("refused updates changed the stored password to %q", got)
	}

	if _, err := update(func(sp *pb.ServiceSpec) { sp.Task.Container.RegistryAuth = nil }); err != nil {
		t.Fatal(err)
	}
	if ra := storedAuth(st, id); ra != nil {
		t.Fatalf("credentials removed from the spec are still stored: %v", ra)
	}
	cur, _ := s.GetService(ctx, &pb.GetServiceRequest{ServiceId: id})
	if _, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: id, ServiceVersion: cur.GetService().GetMeta().GetVersion(), Rollback: true}); err != nil {
		t.Fatal(err)
	}
	if got := openAuth(t, key, storedAuth(st, id)); got != "rotated" {
		t.Fatalf("rollback restored password %q, want the previous spec's", got)
	}
}

func TestRegistryAuthRefusedOnCreate(t *testing.T) {
	s, st, _ := sealingServer(t)
	before := st.Index()
	for _, tc := range []struct {
		name  string
		auth  *pb.RegistryAuth
		field string
	}{
		{"another registry", &pb.RegistryAuth{Server: "ghcr.io", Username: "alice", Password: "p"}, "registry_auth.server"},
		{"no password", &pb.RegistryAuth{Server: regHost, Username: "alice"}, "registry_auth.password"},
		{"no user", &pb.RegistryAuth{Server: regHost, Password: "p"}, "registry_auth.username"},
		{"sealed from a client", &pb.RegistryAuth{Server: regHost, Username: "alice", SealedPassword: []byte("x")}, "registry_auth.sealed_password"},
	} {
		sp := authSpec("private", "", "")
		sp.Task.Container.RegistryAuth = tc.auth
		_, err := s.CreateService(context.Background(), &pb.CreateServiceRequest{Spec: sp})
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid "+tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	if st.Index() != before {
		t.Fatal("refused specs changed the store")
	}
}
