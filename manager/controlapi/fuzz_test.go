package controlapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// FuzzControl calls Control handlers with requests decoded from random
// bytes, two calls in a row (the first may create what the second reads)
// on a server with a real store holding one object of each kind. It fails
// when a handler panics, answers an error without a gRPC status (or with
// Internal or Unknown, which no request should cause), leaks a secret,
// or leaves a spec in the store that validation refuses.
func FuzzControl(f *testing.F) {
	f.Fuzz(func(t *testing.T, op1 uint8, req1 []byte, op2 uint8, req2 []byte) {
		s, st := fuzzServer(t)
		input := slices.Concat(req1, req2)
		fuzzCall(t, s, op1, req1, input)
		fuzzCall(t, s, op2, req2, input)
		checkStored(t, st)
	})
}

// Values the seeded store holds that no response may carry: secret data
// (also as its SHA-256), sealed bytes, the CA key, a registry password.
var fuzzSecrets = [][]byte{[]byte("fuzz-secret-data"), []byte(hexSHA256("fuzz-secret-data")), []byte("fuzz-ca-key"), []byte("fuzz-registry-password"), []byte("sealed:")}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fuzzJoinTokens are returned by GetJoinToken alone.
var fuzzJoinTokens = [][]byte{[]byte("fuzz-worker-token"), []byte("fuzz-manager-token")}

func fuzzCall(t *testing.T, s *Server, op uint8, data, input []byte) {
	r := controlRPCs[int(op)%len(controlRPCs)]
	req := r.newReq()
	if proto.Unmarshal(data, req) != nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s(%v) panicked: %v\n%s", r.method, req, p, debug.Stack())
		}
	}()
	out, err := r.call(context.Background(), s, req)
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || st.Code() == codes.Internal || st.Code() == codes.Unknown {
			t.Fatalf("%s(%v): %v (status %v, %v): every error must carry a fitting gRPC code", r.method, req, err, ok, st.Code())
		}
		return
	}
	leaks := fuzzSecrets
	if r.method != "GetJoinToken" {
		leaks = append(slices.Clip(leaks), fuzzJoinTokens...)
	}
	for _, m := range out {
		b, _ := proto.Marshal(m)
		for _, leak := range leaks {
			if bytes.Contains(b, leak) && !bytes.Contains(input, leak) {
				t.Fatalf("%s(%v) answered %q, which carries %q", r.method, req, m, leak)
			}
		}
	}
}

// checkStored: whatever was accepted, the stored specs are valid.
func checkStored(t *testing.T, st *store.MemoryStore) {
	st.View(func(tx store.ReadTx) {
		svcs, _ := tx.FindServices(store.All)
		for _, svc := range svcs {
			if err := validate.ServiceSpec(svc.GetSpec()); err != nil {
				t.Fatalf("stored service %v: %v", svc, err)
			}
		}
		nws, _ := tx.FindNetworks(store.All)
		for _, n := range nws {
			if err := validate.NetworkSpec(n.GetSpec()); err != nil {
				t.Fatalf("stored network %v: %v", n, err)
			}
		}
		nodes, _ := tx.FindNodes(store.All)
		for _, n := range nodes {
			if err := validate.NodeSpec(n.GetSpec()); err != nil {
				t.Fatalf("stored node %v: %v", n, err)
			}
		}
		if c := tx.GetCluster("c1"); c == nil || validate.ClusterSpec(c.GetSpec()) != nil {
			t.Fatalf("stored cluster %v", c)
		}
	})
}

// fuzzServer is a Control server over a real store seeded with a
// cluster, a network, a secret, a service using both (with registry
// credentials), a task, a worker and a manager node.
func fuzzServer(t *testing.T) (*Server, *store.MemoryStore) {
	st := store.New(nil)
	tok := 0
	s := New(Config{
		Store: st, ClusterID: "c1", Membership: fuzzMembers{},
		NewToken:   func() (string, error) { tok++; return fmt.Sprintf("fuzz-new-token-%d", tok), nil },
		SealSecret: func(b []byte) ([]byte, error) { return append([]byte("sealed:"), b...), nil },
	})
	ctx := context.Background()
	err := st.Update(ctx, func(tx store.Tx) error {
		return errors.Join(
			tx.CreateCluster(&pb.Cluster{Id: "c1", Spec: &pb.ClusterSpec{Annotations: &pb.Annotations{Name: "default"}},
				JoinTokens: &pb.JoinTokens{Worker: "fuzz-worker-token", Manager: "fuzz-manager-token"},
				RootCa:     &pb.RootCA{CaKey: []byte("fuzz-ca-key"), CaCertHash: "h"}}),
			tx.CreateNode(&pb.Node{Id: "node1", Spec: &pb.NodeSpec{}, Description: &pb.NodeDescription{Hostname: "worker1"},
				Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}}),
			tx.CreateNode(&pb.Node{Id: "mgr1", Role: pb.NodeSpec_ROLE_MANAGER, Spec: &pb.NodeSpec{DesiredRole: pb.NodeSpec_ROLE_MANAGER},
				Description: &pb.NodeDescription{Hostname: "manager1"}, Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "back"}}}))
	must(s.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: "db"}, Data: []byte("fuzz-secret-data")}}))
	sp := spec("web", 2)
	sp.Networks = []*pb.NetworkAttachment{{Target: "back"}}
	sp.Task.Container.Image = "127.0.0.1:5000/app:v1"
	sp.Task.Container.Secrets = []*pb.SecretReference{{SecretName: "db", FileName: "db"}}
	sp.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: "127.0.0.1:5000", Username: "u", Password: "fuzz-registry-password"}
	sp.Endpoint = &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	svc, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: sp})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		var stored *pb.Service
		stored = tx.GetService(svc.GetService().GetId())
		return tx.CreateTask(&pb.Task{Id: "task1", ServiceId: stored.GetId(), NodeId: "node1", Slot: 1,
			Spec: stored.GetSpec().GetTask(), DesiredState: pb.TaskState_TASK_STATE_RUNNING})
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// fuzzMembers is a one-manager Raft membership: mgr1 leads.
type fuzzMembers struct{}

func (fuzzMembers) Members() ([]*pb.RaftMember, error) {
	return []*pb.RaftMember{{NodeId: "mgr1", Addr: "127.0.0.1:1", Leader: true}}, nil
}
func (fuzzMembers) Leader() (string, string) { return "mgr1", "127.0.0.1:1" }
func (fuzzMembers) AppliedIndex() uint64     { return 1 }
func (fuzzMembers) RemoveServer(_ context.Context, id string) error {
	return fmt.Errorf("removing %s would leave no manager", id)
}

// controlRPC is one Control method as the fuzz target calls it.
type controlRPC struct {
	method string
	newReq func() proto.Message
	// call returns the messages answered.
	call func(ctx context.Context, s *Server, req proto.Message) ([]proto.Message, error)
}

func unary[Req, Resp proto.Message](newReq func() Req, h func(*Server, context.Context, Req) (Resp, error)) controlRPC {
	return controlRPC{
		method: methodOf(newReq()),
		newReq: func() proto.Message { return newReq() },
		call: func(ctx context.Context, s *Server, req proto.Message) ([]proto.Message, error) {
			resp, err := h(s, ctx, req.(Req))
			return []proto.Message{resp}, err
		},
	}
}

func streaming[Req proto.Message, Resp any, PResp interface {
	*Resp
	proto.Message
}](newReq func() Req, h func(*Server, Req, grpc.ServerStreamingServer[Resp]) error) controlRPC {
	return controlRPC{
		method: methodOf(newReq()),
		newReq: func() proto.Message { return newReq() },
		call: func(ctx context.Context, s *Server, req proto.Message) ([]proto.Message, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st := &firstMessage[Resp]{ctx: ctx, cancel: cancel}
			err := h(s, req.(Req), st)
			out := make([]proto.Message, 0, len(st.sent))
			for _, m := range st.sent {
				out = append(out, PResp(m))
			}
			return out, err
		},
	}
}

func methodOf(req proto.Message) string {
	return strings.TrimSuffix(string(req.ProtoReflect().Descriptor().Name()), "Request")
}

// firstMessage is a server stream whose client goes away after the first
// message.
type firstMessage[T any] struct {
	grpc.ServerStream // nil: handlers call only Context and Send
	ctx               context.Context
	cancel            func()
	sent              []*T
}

func (f *firstMessage[T]) Context() context.Context { return f.ctx }

func (f *firstMessage[T]) Send(m *T) error {
	f.sent = append(f.sent, m)
	f.cancel()
	return nil
}

// controlRPCs is every Control method; TestFuzzReachesEveryMethod keeps
// it complete.
var controlRPCs = []controlRPC{
	unary(func() *pb.CreateServiceRequest { return &pb.CreateServiceRequest{} }, (*Server).CreateService),
	unary(func() *pb.GetServiceRequest { return &pb.GetServiceRequest{} }, (*Server).GetService),
	unary(func() *pb.ListServicesRequest { return &pb.ListServicesRequest{} }, (*Server).ListServices),
	unary(func() *pb.UpdateServiceRequest { return &pb.UpdateServiceRequest{} }, (*Server).UpdateService),
	unary(func() *pb.RemoveServiceRequest { return &pb.RemoveServiceRequest{} }, (*Server).RemoveService),
	unary(func() *pb.GetTaskRequest { return &pb.GetTaskRequest{} }, (*Server).GetTask),
	unary(func() *pb.ListTasksRequest { return &pb.ListTasksRequest{} }, (*Server).ListTasks),
	unary(func() *pb.GetNodeRequest { return &pb.GetNodeRequest{} }, (*Server).GetNode),
	unary(func() *pb.ListNodesRequest { return &pb.ListNodesRequest{} }, (*Server).ListNodes),
	unary(func() *pb.UpdateNodeRequest { return &pb.UpdateNodeRequest{} }, (*Server).UpdateNode),
	unary(func() *pb.RemoveNodeRequest { return &pb.RemoveNodeRequest{} }, (*Server).RemoveNode),
	unary(func() *pb.CreateNetworkRequest { return &pb.CreateNetworkRequest{} }, (*Server).CreateNetwork),
	unary(func() *pb.GetNetworkRequest { return &pb.GetNetworkRequest{} }, (*Server).GetNetwork),
	unary(func() *pb.ListNetworksRequest { return &pb.ListNetworksRequest{} }, (*Server).ListNetworks),
	unary(func() *pb.RemoveNetworkRequest { return &pb.RemoveNetworkRequest{} }, (*Server).RemoveNetwork),
	unary(func() *pb.CreateSecretRequest { return &pb.CreateSecretRequest{} }, (*Server).CreateSecret),
	unary(func() *pb.GetSecretRequest { return &pb.GetSecretRequest{} }, (*Server).GetSecret),
	unary(func() *pb.ListSecretsRequest { return &pb.ListSecretsRequest{} }, (*Server).ListSecrets),
	unary(func() *pb.RemoveSecretRequest { return &pb.RemoveSecretRequest{} }, (*Server).RemoveSecret),
	unary(func() *pb.GetClusterRequest { return &pb.GetClusterRequest{} }, (*Server).GetCluster),
	unary(func() *pb.UpdateClusterRequest { return &pb.UpdateClusterRequest{} }, (*Server).UpdateCluster),
	unary(func() *pb.GetJoinTokenRequest { return &pb.GetJoinTokenRequest{} }, (*Server).GetJoinToken),
	streaming(func() *pb.WatchTasksRequest { return &pb.WatchTasksRequest{} }, (*Server).WatchTasks),
	streaming(func() *pb.ServiceLogsRequest { return &pb.ServiceLogsRequest{} }, (*Server).ServiceLogs),
	bounded(streaming(func() *pb.EventsRequest { return &pb.EventsRequest{} }, (*Server).Events)),
	execRPC(),
	bounded(streaming(func() *pb.StatsRequest { return &pb.StatsRequest{} }, (*Server).Stats)),
	// Appended, so that the seeds above keep calling what they call.
	unary(func() *pb.CreateConfigRequest { return &pb.CreateConfigRequest{} }, (*Server).CreateConfig),
	unary(func() *pb.GetConfigRequest { return &pb.GetConfigRequest{} }, (*Server).GetConfig),
	unary(func() *pb.ListConfigsRequest { return &pb.ListConfigsRequest{} }, (*Server).ListConfigs),
	unary(func() *pb.RemoveConfigRequest { return &pb.RemoveConfigRequest{} }, (*Server).RemoveConfig),
}

// bounded ends a call that may wait for changes (Events) after a moment.
func bounded(r controlRPC) controlRPC {
	call := r.call
	r.call = func(ctx context.Context, s *Server, req proto.Message) ([]proto.Message, error) {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		return call(ctx, s, req)
	}
	return r
}

// execRPC calls Exec with the request as its first message and no more
// input.
func execRPC() controlRPC {
	return controlRPC{
		method: "Exec",
		newReq: func() proto.Message { return &pb.ExecInput{} },
		call: func(ctx context.Context, s *Server, req proto.Message) ([]proto.Message, error) {
			ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			st := &oneInput{ctx: ctx, first: req.(*pb.ExecInput)}
			err := s.Exec(st)
			return st.sent, err
		},
	}
}

// oneInput is an Exec client stream that sends one message.
type oneInput struct {
	grpc.ServerStream // nil: handlers call only Context, Recv and Send
	ctx               context.Context
	first             *pb.ExecInput
	sent              []proto.Message
}

func (o *oneInput) Context() context.Context { return o.ctx }

func (o *oneInput) Recv() (*pb.ExecInput, error) {
	if m := o.first; m != nil {
		o.first = nil
		return m, nil
	}
	return nil, io.EOF
}

func (o *oneInput) Send(m *pb.ExecOutput) error {
	o.sent = append(o.sent, m)
	return nil
}

// TestFuzzReachesEveryMethod: the fuzz target calls every method of the
// Control service, and its corpus has a seed for each.
func TestFuzzReachesEveryMethod(t *testing.T) {
	var want, got []string
	for _, m := range pb.Control_ServiceDesc.Methods {
		want = append(want, m.MethodName)
	}
	for _, m := range pb.Control_ServiceDesc.Streams {
		want = append(want, m.StreamName)
	}
	for _, r := range controlRPCs {
		got = append(got, r.method)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("fuzz target calls %v, the Control service has %v", got, want)
	}
	seeded := map[string]bool{}
	files, _ := filepath.Glob("testdata/fuzz/FuzzControl/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The first call's method is the file's second line: byte('\xNN').
		lines := strings.Split(string(b), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "byte(") {
			continue
		}
		op, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "byte("), ")"))
		if err == nil && len(op) == 1 {
			seeded[controlRPCs[int(op[0])%len(controlRPCs)].method] = true
		}
	}
	for _, m := range want {
		if !seeded[m] {
			t.Errorf("no seed in testdata/fuzz/FuzzControl calls %s first", m)
		}
	}
}
