package mux

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"berth/ca"
)

func creds(t *testing.T, root *ca.Root, id, role string) *ca.Credentials {
	t.Helper()
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := root.Issue(ca.IssueRequest{CSRPEM: csrPEM, NodeID: id, Role: role, Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.NewCredentials(root.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// identityHealth answers health checks and records the caller's node ID.
type identityHealth struct {
	*health.Server
	seen chan string
}

func (h identityHealth) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	p, _ := peer.FromContext(ctx)
	info := p.AuthInfo.(credentials.TLSInfo)
	id, _ := ca.IdentityOf(info.State.PeerCertificates[0])
	h.seen <- id.NodeID
	return h.Server.Check(ctx, r)
}

func TestGRPCAndRaftShareOnePort(t *testing.T) {
	root, err := ca.NewRoot("c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mgr := creds(t, root, "m1", ca.RoleManager)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(ln, mgr, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx) }()
	srv := grpc.NewServer(grpc.Creds(Handshaken()))
	h := identityHealth{health.NewServer(), make(chan string, 1)}
	healthpb.RegisterHealthServer(srv, h)
	go srv.Serve(m.GRPCListener())
	t.Cleanup(func() { srv.Stop(); cancel(); <-served })

	// gRPC with a worker certificate: served, and the handler sees who called.
	worker := creds(t, root, "w1", ca.RoleWorker)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(worker.ClientConfig())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("grpc through the mux: %v", err)
	}
	if got := <-h.seen; got != "w1" {
		t.Fatalf("handler saw %q, want w1", got)
	}

	// Raft from another manager: reaches the raft layer.
	layer := m.RaftLayer()
	other := &raftLayer{creds: creds(t, root, "m2", ca.RoleManager)}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := layer.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	out, err := other.Dial(raft.ServerAddress("127.0.0.1:"+portOf(ln)), 5*time.Second)
	if err != nil {
		t.Fatalf("raft dial: %v", err)
	}
	defer out.Close()
	if _, err := out.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	in := <-accepted
	buf := make([]byte, 4)
	if _, err := io.ReadFull(in, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("raft layer read %q, %v", buf, err)
	}
	in.Close()

	// Raft from a worker: refused.
	wl := &raftLayer{creds: worker}
	if c, err := wl.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err == nil {
			t.Fatal("a worker's raft connection stayed open")
		}
		c.Close()
	}
}

func portOf(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
