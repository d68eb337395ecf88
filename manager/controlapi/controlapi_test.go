package controlapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func newServer(t *testing.T) (*Server, *store.MemoryStore) {
	t.Helper()
	st := store.New(nil)
	tok := 0
	s := New(Config{
		Store: st, ClusterID: "c1",
		NewToken:   func() (string, error) { tok++; return strings.Repeat("t", tok), nil },
		SealSecret: func(b []byte) ([]byte, error) { return append([]byte("sealed:"), b...), nil },
	})
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateCluster(&pb.Cluster{Id: "c1", Spec: &pb.ClusterSpec{Annotations: &pb.Annotations{Name: "default"}},
			JoinTokens: &pb.JoinTokens{Worker: "w", Manager: "m"}, RootCa: &pb.RootCA{CaKey: []byte("key"), CaCertHash: "h"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func spec(name string, replicas int64) *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: name},
		Replicas:    proto.Int64(replicas),
		Task:        &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "busybox:latest"}},
	}
}

func code(err error) codes.Code { return status.Code(err) }

func TestServiceLifecycle(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	created, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 2)})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetService().GetId()
	for _, ref := range []string{id, "web", id[:6]} {
		got, err := s.GetService(ctx, &pb.GetServiceRequest{ServiceId: ref})
		if err != nil || got.GetService().GetId() != id {
			t.Fatalf("GetService(%q) = %v, %v", ref, got, err)
		}
	}
	if _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 1)}); code(err) != codes.AlreadyExists {
		t.Fatalf("duplicate name: %v", err)
	}

	cur := created.GetService()
	next := spec("web", 5)
	upd, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur.GetMeta().GetVersion(), Spec: next})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetService().GetSpec().GetReplicas() != 5 || upd.GetService().GetSpecVersion() != 2 || upd.GetService().GetPreviousSpec().GetReplicas() != 2 {
		t.Fatalf("after update: %v", upd.GetService())
	}
	// A stale version is refused and changes nothing.
	if _, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: "web", ServiceVersion: cur.GetMeta().GetVersion(), Spec: spec("web", 9)}); code(err) != codes.Aborted {
		t.Fatalf("stale update: %v", err)
	}
	rb, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: "web", ServiceVersion: upd.GetService().GetMeta().GetVersion(), Rollback: true})
	if err != nil || rb.GetService().GetSpec().GetReplicas() != 2 {
		t.Fatalf("rollback: %v, %v", rb, err)
	}
	if _, err := s.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetService(ctx, &pb.GetServiceRequest{ServiceId: "web"}); code(err) != codes.NotFound {
		t.Fatalf("after remove: %v", err)
	}
}

// TestBadSpecsChangeNothing: each bad spec is InvalidArgument naming the field.
func TestBadSpecsChangeNothing(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	if _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: func() *pb.ServiceSpec {
		sp := spec("api", 1)
		sp.Endpoint = &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		return sp
	}()}); err != nil {
		t.Fatal(err)
	}
	before := st.Index()
	for _, tc := range []struct {
		name  string
		spec  *pb.ServiceSpec
		field string
	}{
		{"empty image", func() *pb.ServiceSpec { sp := spec("a", 1); sp.Task.Container.Image = ""; return sp }(), "image"},
		{"negative replicas", spec("a", -1), "replicas"},
		{"replicas with global", func() *pb.ServiceSpec { sp := spec("a", 3); sp.Mode = pb.ServiceMode_SERVICE_MODE_GLOBAL; return sp }(), "replicas"},
		{"unknown network", func() *pb.ServiceSpec {
			sp := spec("a", 1)
			sp.Networks = []*pb.NetworkAttachment{{Target: "nope"}}
			return sp
		}(), "networks[0]"},
		{"unknown secret", func() *pb.ServiceSpec {
			sp := spec("a", 1)
			sp.Task.Container.Secrets = []*pb.SecretReference{{SecretName: "nope"}}
			return sp
		}(), "secrets[0]"},
		{"port in use", func() *pb.ServiceSpec {
			sp := spec("a", 1)
			sp.Endpoint = &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 81, PublishedPort: 8080}}}
			return sp
		}(), "ports[0].published"},
	} {
		_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: tc.spec})
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid "+tc.field) {
			t.Errorf("%s: %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
	if st.Index() != before {
		t.Fatalf("bad specs changed the store: index %d → %d", before, st.Index())
	}
}

func TestClusterHidesSecretsAndRotatesTokens(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	c, err := s.GetCluster(ctx, &pb.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c.GetCluster().GetJoinTokens() != nil || c.GetCluster().GetRootCa().GetCaKey() != nil {
		t.Fatalf("cluster info leaks secrets: %v", c.GetCluster())
	}
	before, _ := s.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: pb.NodeSpec_ROLE_WORKER})
	if _, err := s.UpdateCluster(ctx, &pb.UpdateClusterRequest{ClusterVersion: c.GetCluster().GetMeta().GetVersion(), RotateWorkerToken: true}); err != nil {
		t.Fatal(err)
	}
	after, _ := s.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: pb.NodeSpec_ROLE_WORKER})
	mgr, _ := s.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: pb.NodeSpec_ROLE_MANAGER})
	if before.GetToken() == after.GetToken() || mgr.GetToken() != "m" {
		t.Fatalf("rotation: worker %q → %q, manager %q", before.GetToken(), after.GetToken(), mgr.GetToken())
	}
}

func TestSecretsAndNetworks(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	sec, err := s.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: "db"}, Data: []byte("pw")}})
	if err != nil {
		t.Fatal(err)
	}
	if sec.GetSecret().GetSpec().GetData() != nil {
		t.Fatal("secret data returned to a client")
	}
	st.View(func(tx store.ReadTx) {
		if got := string(tx.GetSecret(sec.GetSecret().GetId()).GetSpec().GetData()); got != "sealed:pw" {
			t.Fatalf("stored secret data %q, want it sealed", got)
		}
	})
	if _, err := s.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "back"}}}); err != nil {
		t.Fatal(err)
	}
	sp := spec("app", 1)
	sp.Networks = []*pb.NetworkAttachment{{Target: "back"}}
	sp.Task.Container.Secrets = []*pb.SecretReference{{SecretName: "db", FileName: "db"}}
	if _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: sp}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "back"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("removing a network in use: %v", err)
	}
	if _, err := s.RemoveSecret(ctx, &pb.RemoveSecretRequest{SecretId: "db"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("removing a secret in use: %v", err)
	}
}
