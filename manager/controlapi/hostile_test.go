package controlapi

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// noPanic runs call and turns a panic into a test failure, so one bad
// handler does not hide the others.
func noPanic(t *testing.T, name string, call func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v\n%s", name, r, debug.Stack())
			err = status.Error(codes.Internal, "panicked")
		}
	}()
	return call()
}

// short is an error's text, cut to a screenful.
func short(err error) string {
	if err == nil {
		return "<nil>"
	}
	if s := err.Error(); len(s) > 300 {
		return fmt.Sprintf("%s… (%d bytes)", s[:300], len(s))
	}
	return err.Error()
}

// seeded is a server holding one object of each kind, for requests that
// refer to them.
func seeded(t *testing.T) (*Server, *store.MemoryStore) {
	t.Helper()
	s, st := newServer(t)
	ctx := context.Background()
	if _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 1)}); err != nil {
		t.Fatal(err)
	}
	err := st.Update(ctx, func(tx store.Tx) error {
		return tx.CreateNode(&pb.Node{Id: "node1", Spec: &pb.NodeSpec{}, Description: &pb.NodeDescription{Hostname: "host1"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// TestEmptyRequestsAreInvalid: requests with nil or empty sub-messages
// (what an empty gRPC message decodes to) are refused with
// InvalidArgument naming what is missing, never panic, and change nothing.
func TestEmptyRequestsAreInvalid(t *testing.T) {
	s, st := seeded(t)
	ctx := context.Background()
	var svcVersion, nodeVersion uint64
	st.View(func(tx store.ReadTx) {
		svcs, _ := tx.FindServices(store.ByName("web"))
		svcVersion = svcs[0].GetMeta().GetVersion()
		nodeVersion = tx.GetNode("node1").GetMeta().GetVersion()
	})
	before := st.Index()
	for _, tc := range []struct {
		name string
		call func() error
		want string // in the message
	}{
		{"CreateService{}", func() error { _, err := s.CreateService(ctx, &pb.CreateServiceRequest{}); return err }, "spec"},
		{"CreateService{spec:{}}", func() error {
			_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{}})
			return err
		}, "name"},
		{"CreateService without task", func() error {
			_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "a"}}})
			return err
		}, "task"},
		{"CreateService with empty task", func() error {
			_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "a"}, Task: &pb.TaskSpec{}}})
			return err
		}, "container"},
		{"CreateService global without task", func() error {
			_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "a"}, Mode: pb.ServiceMode_SERVICE_MODE_GLOBAL}})
			return err
		}, "task"},
		{"CreateNetwork{}", func() error { _, err := s.CreateNetwork(ctx, &pb.CreateNetworkRequest{}); return err }, "spec"},
		{"CreateNetwork{spec:{}}", func() error {
			_, err := s.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{}})
			return err
		}, "name"},
		{"CreateSecret{}", func() error { _, err := s.CreateSecret(ctx, &pb.CreateSecretRequest{}); return err }, "spec"},
		{"UpdateService without spec", func() error {
			_, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: "web", ServiceVersion: svcVersion})
			return err
		}, "spec"},
		{"UpdateNode without spec", func() error {
			_, err := s.UpdateNode(ctx, &pb.UpdateNodeRequest{NodeId: "node1", NodeVersion: nodeVersion})
			return err
		}, "spec"},
		{"GetService{}", func() error { _, err := s.GetService(ctx, &pb.GetServiceRequest{}); return err }, "service"},
		{"RemoveService{}", func() error { _, err := s.RemoveService(ctx, &pb.RemoveServiceRequest{}); return err }, "service"},
		{"UpdateService{}", func() error { _, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{}); return err }, "service"},
		{"GetNode{}", func() error { _, err := s.GetNode(ctx, &pb.GetNodeRequest{}); return err }, "node"},
		{"UpdateNode{}", func() error { _, err := s.UpdateNode(ctx, &pb.UpdateNodeRequest{}); return err }, "spec"},
		{"RemoveNode{}", func() error { _, err := s.RemoveNode(ctx, &pb.RemoveNodeRequest{}); return err }, "node"},
		{"GetTask{}", func() error { _, err := s.GetTask(ctx, &pb.GetTaskRequest{}); return err }, "task"},
		{"GetNetwork{}", func() error { _, err := s.GetNetwork(ctx, &pb.GetNetworkRequest{}); return err }, "network"},
		{"RemoveNetwork{}", func() error { _, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{}); return err }, "network"},
		{"GetSecret{}", func() error { _, err := s.GetSecret(ctx, &pb.GetSecretRequest{}); return err }, "secret"},
		{"RemoveSecret{}", func() error { _, err := s.RemoveSecret(ctx, &pb.RemoveSecretRequest{}); return err }, "secret"},
	} {
		err := noPanic(t, tc.name, tc.call)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %s; want InvalidArgument mentioning %q", tc.name, short(err), tc.want)
		}
	}
	if st.Index() != before {
		t.Errorf("refused requests changed the store: index %d → %d", before, st.Index())
	}
	st.View(func(tx store.ReadTx) {
		if n := tx.GetNode("node1"); n.GetSpec() == nil {
			t.Errorf("node1 lost its spec: %v", n)
		}
	})
}

// TestEmptyRequestsThatAreValid: the requests whose empty form means
// something (list everything, change nothing) answer without error.
func TestEmptyRequestsThatAreValid(t *testing.T) {
	s, _ := seeded(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"ListServices": func() error { _, err := s.ListServices(ctx, &pb.ListServicesRequest{}); return err },
		"ListTasks":    func() error { _, err := s.ListTasks(ctx, &pb.ListTasksRequest{}); return err },
		"ListNodes":    func() error { _, err := s.ListNodes(ctx, &pb.ListNodesRequest{}); return err },
		"ListNetworks": func() error { _, err := s.ListNetworks(ctx, &pb.ListNetworksRequest{}); return err },
		"ListSecrets":  func() error { _, err := s.ListSecrets(ctx, &pb.ListSecretsRequest{}); return err },
		"GetCluster":   func() error { _, err := s.GetCluster(ctx, &pb.GetClusterRequest{}); return err },
		"GetJoinToken": func() error { _, err := s.GetJoinToken(ctx, &pb.GetJoinTokenRequest{}); return err },
	} {
		if err := noPanic(t, name, call); err != nil {
			t.Errorf("%s{}: %v", name, err)
		}
	}
}

// TestOversizedSpecsAreRefused: a spec far past any real service's size
// is refused naming the field and the limit, before it reaches the store.
func TestOversizedSpecsAreRefused(t *testing.T) {
	s, st := seeded(t)
	ctx := context.Background()
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	before := st.Index()
	for i, tc := range []struct {
		name   string
		mutate func(*pb.ServiceSpec)
		field  string
	}{
		{"env", func(sp *pb.ServiceSpec) {
			sp.Task.Container.Env = many(10000, func(i int) string { return "K" + strings.Repeat("x", i%7) + "=v" })
		}, "env"},
		{"args", func(sp *pb.ServiceSpec) { sp.Task.Container.Args = many(100000, func(int) string { return "a" }) }, "args"},
		{"one argument", func(sp *pb.ServiceSpec) { sp.Task.Container.Args = []string{strings.Repeat("a", 200<<10)} }, "args[0]"},
		{"constraints", func(sp *pb.ServiceSpec) {
			sp.Task.Placement = &pb.Placement{Constraints: many(2000, func(int) string { return "node.role==worker" })}
		}, "placement.constraints"},
		{"labels", func(sp *pb.ServiceSpec) {
			sp.Annotations.Labels = map[string]string{}
			for i := range 1000 {
				sp.Annotations.Labels[fmt.Sprintf("k%d", i)] = "v"
			}
		}, "labels"},
		{"label value", func(sp *pb.ServiceSpec) {
			sp.Annotations.Labels = map[string]string{"k": strings.Repeat("v", 64<<10)}
		}, "labels"},
		{"mounts", func(sp *pb.ServiceSpec) {
			for i := range 5000 {
				sp.Task.Container.Mounts = append(sp.Task.Container.Mounts, &pb.Mount{Type: pb.Mount_TYPE_TMPFS, Target: fmt.Sprintf("/t/%d", i)})
			}
		}, "mounts"},
		{"ports", func(sp *pb.ServiceSpec) {
			sp.Endpoint = &pb.EndpointSpec{}
			for i := range 20000 {
				sp.Endpoint.Ports = append(sp.Endpoint.Ports, &pb.PortConfig{TargetPort: uint32(1 + i%60000)})
			}
		}, "ports"},
		{"secrets", func(sp *pb.ServiceSpec) {
			for i := range 1000 {
				sp.Task.Container.Secrets = append(sp.Task.Container.Secrets, &pb.SecretReference{SecretName: "db", FileName: fmt.Sprintf("f%d", i)})
			}
		}, "secrets"},
		{"image", func(sp *pb.ServiceSpec) { sp.Task.Container.Image = "busybox:" + strings.Repeat("a", 100000) }, "image"},
		{"hostname", func(sp *pb.ServiceSpec) { sp.Task.Container.Hostname = strings.Repeat("h", 100) }, "hostname"},
		{"whole spec", func(sp *pb.ServiceSpec) {
			sp.Task.Container.Env = many(3000, func(i int) string { return fmt.Sprintf("K%d=%s", i, strings.Repeat("v", 1000)) })
		}, "spec"},
	} {
		sp := spec(fmt.Sprintf("big%d", i), 1)
		tc.mutate(sp)
		err := noPanic(t, tc.name, func() error { _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: sp}); return err })
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid "+tc.field+":") || !strings.Contains(err.Error(), "limit") {
			t.Errorf("%s: %s; want InvalidArgument naming %s and its limit", tc.name, short(err), tc.field)
		} else if len(err.Error()) > 300 {
			t.Errorf("%s: the error echoes the input back: %s", tc.name, short(err))
		}
	}
	if st.Index() != before {
		t.Errorf("oversized specs changed the store: index %d → %d", before, st.Index())
	}
}

// TestSecretTargets: a secret's target is kept relative to /run/secrets,
// cleaned; a target with ".." or outside /run/secrets is refused.
func TestSecretTargets(t *testing.T) {
	s, st := seeded(t)
	ctx := context.Background()
	if _, err := s.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: "db"}, Data: []byte("pw")}}); err != nil {
		t.Fatal(err)
	}
	withTarget := func(name, target string) *pb.ServiceSpec {
		sp := spec(name, 1)
		sp.Task.Container.Secrets = []*pb.SecretReference{{SecretName: "db", FileName: target}}
		return sp
	}
	before := st.Index()
	for _, target := range []string{"..", "../etc/passwd", "a/../../x", "/run/secrets/../../etc/passwd", "/run/secrets/", "/run/secrets", "/etc/shadow", "./..", "a/.."} {
		err := noPanic(t, target, func() error {
			_, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: withTarget("bad", target)})
			return err
		})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "invalid secrets[0].target") {
			t.Errorf("target %q: %s; want InvalidArgument naming secrets[0].target", target, short(err))
		}
	}
	if st.Index() != before {
		t.Errorf("refused targets changed the store: index %d → %d", before, st.Index())
	}
	for i, tc := range []struct{ target, want string }{
		{"db", "db"},
		{"/run/secrets/db", "db"},
		{"./conf//db.pem", "conf/db.pem"},
		{"", "db"},
	} {
		resp, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: withTarget("ok"+string(rune('a'+i)), tc.target)})
		if err != nil {
			t.Errorf("target %q: %v", tc.target, err)
			continue
		}
		if got := resp.GetService().GetSpec().GetTask().GetContainer().GetSecrets()[0].GetFileName(); got != tc.want {
			t.Errorf("target %q stored as %q, want %q", tc.target, got, tc.want)
		}
	}
}

// TestSecretDigestHidden: no read path returns a digest of a secret's
// data (a digest of a short password is as good as the password to
// anyone who can guess candidates), and none is stored.
func TestSecretDigestHidden(t *testing.T) {
	s, st := seeded(t)
	ctx := context.Background()
	created, err := s.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: "db"}, Data: []byte("hunter2")}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetSecret().GetId()
	// A secret stored by an older manager still has one.
	err = st.Update(ctx, func(tx store.Tx) error {
		return tx.CreateSecret(&pb.Secret{Id: "old1", Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: "old"}, Data: []byte("sealed:x")}, Digest: "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"})
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSecret(ctx, &pb.GetSecretRequest{SecretId: "db"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.GetSecret(ctx, &pb.GetSecretRequest{SecretId: "old"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSecrets(ctx, &pb.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range append([]*pb.Secret{created.GetSecret(), got.GetSecret(), old.GetSecret()}, list.GetSecrets()...) {
		if sec.GetDigest() != "" || len(sec.GetSpec().GetData()) != 0 {
			t.Errorf("secret %s returned with digest %q / data %q", sec.GetSpec().GetAnnotations().GetName(), sec.GetDigest(), sec.GetSpec().GetData())
		}
	}
	st.View(func(tx store.ReadTx) {
		if d := tx.GetSecret(id).GetDigest(); d != "" {
			t.Errorf("the store keeps the secret's digest %q", d)
		}
	})
}
