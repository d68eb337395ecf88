package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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

// identityHealth answers health checks and records the caller's verified
// node ID ("" for none) and why its certificate was refused.
type identityHealth struct {
	*health.Server
	creds *ca.Credentials
	seen  chan string
	why   chan error
}

func (h identityHealth) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	id, _ := PeerIdentity(ctx)
	h.seen <- id.NodeID
	h.why <- Unverified(ctx, h.creds)
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
	h := identityHealth{health.NewServer(), mgr, make(chan string, 1), make(chan error, 1)}
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
	if got, why := <-h.seen, <-h.why; got != "w1" || why != nil {
		t.Fatalf("handler saw %q (refused: %v), want w1", got, why)
	}

	// gRPC with another cluster's certificate: the handshake completes,
	// the handler sees no identity and can say why.
	foreign, err := ca.NewRoot("c2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	intruder := creds(t, foreign, "x1", ca.RoleManager)
	cfg := intruder.ClientConfig()
	cfg.RootCAs = root.Pool()
	fconn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer fconn.Close()
	if _, err := healthpb.NewHealthClient(fconn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("grpc with a foreign certificate did not reach the handler: %v", err)
	}
	got, why := <-h.seen, <-h.why
	if got != "" {
		t.Fatalf("handler took a foreign certificate for node %q", got)
	}
	for _, w := range []string{"not from this cluster", "CA " + foreign.Hash()[:12], "this cluster's CA is " + root.Hash()[:12]} {
		if why == nil || !strings.Contains(why.Error(), w) {
			t.Fatalf("refusal %v does not say %q", why, w)
		}
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

	// Raft from a worker, or from a manager of another cluster: refused.
	for name, c := range map[string]*ca.Credentials{"worker": worker, "foreign manager": intruder} {
		cfg := c.ClientConfig()
		cfg.RootCAs = root.Pool()
		cfg.NextProtos = []string{ProtoRaft}
		refusedRaft(t, name, ln.Addr().String(), cfg)
	}
	// Nor without a certificate.
	refusedRaft(t, "no certificate", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: root.Pool(), ServerName: ca.ManagerServerName, NextProtos: []string{ProtoRaft}})
}

// refusedRaft asserts that a Raft connection dialed with cfg is closed by
// the mux, never handed to Raft.
func refusedRaft(t *testing.T, name, addr string, cfg *tls.Config) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("%s: the handshake should complete and the mux refuse: %v", name, err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != ProtoRaft {
		t.Fatalf("%s: negotiated %q", name, p)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: a raft connection was not closed by the mux: %v", name, err)
	}
}

func portOf(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// TestAdmitRaftHasTheLastWord: a manager certificate the cluster no longer
// admits (a removed or demoted manager's) gets no Raft connection; others
// do.
func TestAdmitRaftHasTheLastWord(t *testing.T) {
	root, err := ca.NewRoot("c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked := make(chan string, 4)
	m := New(ln, creds(t, root, "m1", ca.RoleManager), slog.New(slog.DiscardHandler), AdmitRaft(func(id ca.Identity) error {
		asked <- id.NodeID
		if id.NodeID == "gone" {
			return errors.New("node gone was removed")
		}
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	layer := m.RaftLayer()
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("k"))
		}
	}()

	gone := creds(t, root, "gone", ca.RoleManager).ClientConfig()
	gone.NextProtos = []string{ProtoRaft}
	refusedRaft(t, "a manager admit refuses", ln.Addr().String(), gone)
	if id := <-asked; id != "gone" {
		t.Fatalf("admit was asked about %q", id)
	}
	out, err := (&raftLayer{creds: creds(t, root, "m2", ca.RoleManager)}).Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := out.Read(make([]byte, 1)); err != nil {
		t.Fatalf("an admitted manager's raft connection: %v", err)
	}
}
