package manager

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
)

// TestJoinRefused: a manager that joins with no token, a malformed one, a
// worker token, a rotated one or one pinning another CA is refused with a
// message saying what is wrong, keeps no identity, leaves no Node in the
// cluster, and joins once given the right token.
func TestJoinRefused(t *testing.T) {
	a := newTestCluster(t, 1).mgrs[0]
	b := newTestCluster(t, 1).mgrs[0]
	cc := a.control()
	ctx := ctxFor(t, settle)
	rotated := joinToken(t, cc, pb.NodeSpec_ROLE_MANAGER)
	cl, err := cc.GetCluster(ctx, &pb.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.UpdateCluster(ctx, &pb.UpdateClusterRequest{ClusterVersion: cl.GetCluster().GetMeta().GetVersion(), RotateManagerToken: true}); err != nil {
		t.Fatalf("rotate the manager token: %v", err)
	}
	current := joinToken(t, cc, pb.NodeSpec_ROLE_MANAGER)
	if current == rotated {
		t.Fatal("rotation kept the manager token")
	}
	wrongSecret := current[:len(current)-40] + strings.Repeat("0", 40)
	var refused []*testManager

	for _, tc := range []struct {
		name, token string
		want        []string
	}{
		{"no token", "", []string{"--token", `must start with "BERTH-1-"`}},
		{"malformed", "BERTH-1-abc-def", []string{"--token", "BERTH-1-<64 hex CA hash>-<40 hex secret>"}},
		{"worker token", joinToken(t, cc, pb.NodeSpec_ROLE_WORKER), []string{"this is a worker join token", "berth cluster join-token manager"}},
		{"rotated", rotated, []string{"join token rejected", "rotated", "join-token"}},
		{"wrong secret", wrongSecret, []string{"join token rejected"}},
		{"another cluster's CA", joinToken(t, b.control(), pb.NodeSpec_ROLE_MANAGER), []string{"not the one the join token pins"}},
	} {
		// The joiner belongs to the parent test: its data dir outlives the
		// subtest.
		tm := newTestManager(t, fmt.Sprintf("joiner-%d", len(refused)))
		t.Run(tc.name, func(t *testing.T) {
			tm.joins(a, tc.token)
			err := tm.start()
			if err == nil {
				t.Fatal("joined")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("refusal %q does not say %q", err, w)
				}
			}
			if ca.Dir(filepath.Join(tm.cfg.DataDir, certsDir)).Exists() {
				t.Fatal("a refused join left an identity in the data dir")
			}
			refused = append(refused, tm)
		})
	}
	// No refusal recorded a node: a is the only one.
	nodes, err := cc.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := nodes.GetNodes(); len(n) != 1 || n[0].GetId() != a.m.NodeID() {
		t.Fatalf("after refused joins the cluster lists %d nodes, want only %s: %v", len(n), a.m.NodeID(), n)
	}
	// Given the right token, a data dir a join was refused on joins.
	tm := refused[0]
	tm.stop()
	tm.cfg.Token = current
	if err := tm.start(); err != nil {
		t.Fatalf("join with the current token after a refusal: %v", err)
	}
	(&testCluster{t: t, mgrs: []*testManager{a, tm}}).waitMembers(2)
}

// workerCreds gets a worker certificate from NodeCA with the worker join
// token, as an agent does.
func workerCreds(t *testing.T, tm *testManager) *ca.Credentials {
	t.Helper()
	token := joinToken(t, tm.control(), pb.NodeSpec_ROLE_WORKER)
	tok, err := ca.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	resp, root, err := requestCertificate(ctxFor(t, settle), tm.m.Addr(), tok, token, pb.NodeSpec_ROLE_WORKER)
	if err != nil {
		t.Fatalf("worker certificate: %v", err)
	}
	if resp.GetRole() != pb.NodeSpec_ROLE_WORKER || len(resp.GetClusterKey()) != 0 {
		t.Fatalf("worker join got role %v and a cluster key of %d bytes", resp.GetRole(), len(resp.GetClusterKey()))
	}
	creds, err := ca.NewCredentials(root, resp.GetCertificate(), resp.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// TestCallerRoles: each API admits only the certificates it should.
func TestCallerRoles(t *testing.T) {
	a := newTestCluster(t, 1).mgrs[0]
	b := newTestCluster(t, 1).mgrs[0]
	ctx := ctxFor(t, settle)
	aCreds, err := ca.Dir(a.bundleDir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	b.waitBundle()
	bCreds, err := ca.Dir(b.bundleDir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	aRoot := aCreds.ClientConfig().RootCAs

	t.Run("no client certificate", func(t *testing.T) {
		conn := dialTLS(t, a.m.Addr(), credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: aRoot, ServerName: ca.ManagerServerName}))
		_, err := pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{})
		wantStatus(t, "Control without a certificate", err, codes.Unauthenticated, "no client certificate", "DATA_DIR/client")
		_, err = pb.NewRaftMembershipClient(conn).Propose(ctx, &pb.ProposeRequest{Batch: &pb.StoreBatch{}})
		wantStatus(t, "RaftMembership without a certificate", err, codes.Unauthenticated)
		root, err := pb.NewNodeCAClient(conn).GetRootCACertificate(ctx, &pb.GetRootCACertificateRequest{})
		if err != nil || ca.CertHash(root.GetCertificate()) != ca.CertHash(a.m.rootPEM()) {
			t.Fatalf("NodeCA without a certificate: %v", err)
		}
		_, err = pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: []byte("x")})
		wantStatus(t, "renewal without a certificate", err, codes.Unauthenticated, "give a join token")
	})

	t.Run("certificate of another cluster", func(t *testing.T) {
		// b's client certificate, offered to a (whose CA the client
		// trusts): a says whose certificate it is and what to use.
		cfg := bCreds.ClientConfig()
		cfg.RootCAs = aRoot
		conn := dialTLS(t, a.m.Addr(), credentials.NewTLS(cfg))
		_, err := pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{})
		aHash, bHash := ca.CertHash(a.m.rootPEM()), ca.CertHash(b.m.rootPEM())
		wantStatus(t, "Control with another cluster's certificate", err, codes.Unauthenticated,
			"certificate is not from this cluster", "issued by CA "+bHash[:12], "this cluster's CA is "+aHash[:12], "client bundle")
		_, err = pb.NewRaftMembershipClient(conn).Join(ctx, &pb.JoinRequest{NodeId: b.m.NodeID(), Addr: b.m.AdvertiseAddr()})
		wantStatus(t, "RaftMembership.Join with another cluster's certificate", err, codes.Unauthenticated, "not from this cluster")
		_, err = pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: []byte("x")})
		wantStatus(t, "renewal with another cluster's certificate", err, codes.Unauthenticated)
		// b's manager certificate gets no Raft stream from a either.
		mcfg := b.m.id.creds.ClientConfig()
		mcfg.RootCAs, mcfg.NextProtos = aRoot, []string{mux.ProtoRaft}
		wantRaftRefused(t, "another cluster's manager", a.m.Addr(), mcfg)
		// b's bundle as the CLI uses it, pointed at a: a is not trusted.
		conn = dialTLS(t, a.m.Addr(), credentials.NewTLS(bCreds.ClientConfig()))
		_, err = pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{})
		wantStatus(t, "b's bundle against a", err, codes.Unavailable, "certificate signed by unknown authority")
	})

	t.Run("client certificate", func(t *testing.T) {
		conn := dialTLS(t, a.m.Addr(), credentials.NewTLS(aCreds.ClientConfig()))
		if _, err := pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{}); err != nil {
			t.Fatalf("Control with the client bundle: %v", err)
		}
		// The CLI's certificate must not write Raft entries directly.
		_, err := pb.NewRaftMembershipClient(conn).Propose(ctx, &pb.ProposeRequest{Batch: &pb.StoreBatch{}})
		wantStatus(t, "RaftMembership.Propose with a client certificate", err, codes.PermissionDenied, "client certificate may not call")
	})

	t.Run("worker certificate", func(t *testing.T) {
		w := workerCreds(t, a)
		if id := w.Identity(); id.Role != ca.RoleWorker || id.ClusterID != a.m.clusterID {
			t.Fatalf("worker identity %+v", id)
		}
		conn := dialTLS(t, a.m.Addr(), credentials.NewTLS(w.ClientConfig()))
		_, err := pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{})
		wantStatus(t, "Control.ListServices as a worker", err, codes.PermissionDenied, "worker certificate may not call /berth.v1.Control/ListServices")
		raft := pb.NewRaftMembershipClient(conn)
		_, err = raft.Join(ctx, &pb.JoinRequest{NodeId: w.Identity().NodeID, Addr: "127.0.0.1:1"})
		wantStatus(t, "RaftMembership.Join as a worker", err, codes.PermissionDenied, "worker certificate may not call")
		_, err = raft.Propose(ctx, &pb.ProposeRequest{Batch: &pb.StoreBatch{}})
		wantStatus(t, "RaftMembership.Propose as a worker", err, codes.PermissionDenied, "worker certificate may not call")
		// The dispatcher admits workers (it may not be served yet).
		_, err = pb.NewDispatcherClient(conn).Heartbeat(ctx, &pb.HeartbeatRequest{})
		if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
			t.Fatalf("Dispatcher.Heartbeat as a worker: %v", err)
		}
		// Renewal with the worker certificate keeps the worker role.
		_, csr, err := ca.NewKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		renewed, err := pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: csr})
		if err != nil || renewed.GetRole() != pb.NodeSpec_ROLE_WORKER || renewed.GetNodeId() != w.Identity().NodeID || len(renewed.GetClusterKey()) != 0 {
			t.Fatalf("worker renewal: %v, %v", renewed, err)
		}
		// Nor may a worker open Raft's own protocol on the shared port.
		cfg := w.ClientConfig()
		cfg.NextProtos = []string{mux.ProtoRaft}
		wantRaftRefused(t, "a worker", a.m.Addr(), cfg)
	})
}

// wantRaftRefused asserts that the manager at addr closes a Raft
// connection dialed with cfg instead of handing it to Raft.
func wantRaftRefused(t *testing.T, who, addr string, cfg *tls.Config) {
	t.Helper()
	rc, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		rc.SetReadDeadline(time.Now().Add(settle))
		_, err = rc.Read(make([]byte, 1))
		rc.Close()
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s's raft connection was kept open: %v", who, err)
	}
	if !errors.Is(err, io.EOF) {
		t.Logf("%s's raft connection ended with %v", who, err)
	}
}
