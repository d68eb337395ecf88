package manager

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// TestControlSurvivesEmptyRequests: requests with nothing in them, as any
// client can send, are refused as invalid, and the manager serves on.
func TestControlSurvivesEmptyRequests(t *testing.T) {
	tm := newTestCluster(t, 1).mgrs[0]
	cc := tm.control()
	ctx := ctxFor(t, settle)
	for name, call := range map[string]func() error{
		"CreateService{}": func() error { _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{}); return err },
		"CreateNetwork{}": func() error { _, err := cc.CreateNetwork(ctx, &pb.CreateNetworkRequest{}); return err },
		"CreateSecret{}":  func() error { _, err := cc.CreateSecret(ctx, &pb.CreateSecretRequest{}); return err },
		"UpdateNode without spec": func() error {
			_, err := cc.UpdateNode(ctx, &pb.UpdateNodeRequest{NodeId: tm.m.NodeID()})
			return err
		},
		"CreateService without task": func() error {
			_, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "a"}}})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := cc.ListServices(ctx, &pb.ListServicesRequest{}); err != nil {
		t.Fatalf("the manager stopped serving: %v", err)
	}
	select {
	case err := <-tm.done:
		t.Fatalf("the manager stopped: %v", err)
	default:
	}
}

// TestStreamsPerConnectionAreBounded: one connection holds at most
// maxConcurrentStreams open calls; the next waits until one ends.
func TestStreamsPerConnectionAreBounded(t *testing.T) {
	tm := newTestCluster(t, 1).mgrs[0]
	cc := tm.control()
	ctx := ctxFor(t, settle)
	cancels := make([]context.CancelFunc, maxConcurrentStreams)
	for i := range cancels {
		sctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		w, err := cc.WatchTasks(sctx, &pb.WatchTasksRequest{})
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	// One past the bound gets no stream while all the others stay open.
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if w, err := cc.WatchTasks(wait, &pb.WatchTasksRequest{}); err == nil {
		if _, err = w.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("stream %d opened past the bound of %d: %v", maxConcurrentStreams+1, maxConcurrentStreams, err)
		}
	} else if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("stream past the bound: %v, want it to wait", err)
	}
	// Once one ends, the next opens.
	cancels[0]()
	w, err := cc.WatchTasks(ctx, &pb.WatchTasksRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if err != nil {
		t.Fatalf("a stream after one ended: %v", err)
	}
}

// panicky is a Control server whose every call hits a bug.
type panicky struct {
	pb.UnimplementedControlServer
}

func (panicky) GetCluster(context.Context, *pb.GetClusterRequest) (*pb.GetClusterResponse, error) {
	var m map[string]int
	m["boom"]++ // a nil map write: a bug
	return nil, nil
}

func (panicky) WatchTasks(*pb.WatchTasksRequest, pb.Control_WatchTasksServer) error {
	panic("a bug in a stream")
}

// syncBuffer is a log sink handlers may write to from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// guardedServer serves srv with the manager's guards on loopback and
// returns a client connection and the server's log.
func guardedServer(t *testing.T, srv pb.ControlServer) (*grpc.ClientConn, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := grpc.NewServer(guardOptions(slog.New(slog.NewJSONHandler(logs, nil)))...)
	pb.RegisterControlServer(s, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, logs
}

// TestPanicsAnswerInternal: a panic in a unary or streaming handler
// answers Internal, is logged with its stack, and the server goes on.
func TestPanicsAnswerInternal(t *testing.T) {
	conn, logs := guardedServer(t, panicky{})
	cc := pb.NewControlClient(conn)
	ctx := ctxFor(t, settle)
	_, err := cc.GetCluster(ctx, &pb.GetClusterRequest{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "GetCluster") {
		t.Errorf("unary panic: %v, want Internal naming the method", err)
	}
	w, err := cc.WatchTasks(ctx, &pb.WatchTasksRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Internal {
		t.Errorf("stream panic: %v, want Internal", err)
	}
	// The server still answers.
	if _, err := cc.ListServices(ctx, &pb.ListServicesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("after the panics: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"recovered from a panic", "/berth.v1.Control/GetCluster", "assignment to entry in nil map", "guard_test.go", "a bug in a stream", "/berth.v1.Control/WatchTasks"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestOversizedRequestRefused: a request over maxRecvMsgSize is refused
// before any handler sees it.
func TestOversizedRequestRefused(t *testing.T) {
	conn, _ := guardedServer(t, panicky{})
	_, err := pb.NewControlClient(conn).CreateSecret(ctxFor(t, settle), &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Data: make([]byte, maxRecvMsgSize+1)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a %d-byte request: %v, want ResourceExhausted", maxRecvMsgSize+1, err)
	}
}
