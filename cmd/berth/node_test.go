package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// joinWorker joins a worker through NodeCA with the worker token, as an
// agent does, and returns its certificate.
func joinWorker(t *testing.T, addr, token string) *ca.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := ca.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	root, err := pb.NewNodeCAClient(probe).GetRootCACertificate(ctx, &pb.GetRootCACertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := ca.PinnedConfig(root.GetCertificate(), tok.CAHash)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pinned)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: csrPEM, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.NewCredentials(root.GetCertificate(), resp.GetCertificate(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// TestNodeRm: `berth node rm` refuses a node that is not down and says
// how; with --force it prints the ID and what removal does, the node is
// gone from `node ls`, and its certificate opens no session any more.
func TestNodeRm(t *testing.T) {
	dir := startManager(t)
	addrBytes, err := os.ReadFile(filepath.Join(dir, bundleAddr))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(string(addrBytes))
	var tok string
	await.NoError(t, 20*time.Second, func() (err error) {
		tok, err = berth(t, "--tls-dir", dir, "cluster", "join-token", "worker", "-q")
		return err
	}, "join-token worker")
	w := joinWorker(t, addr, strings.TrimSpace(tok))
	id := w.Identity().NodeID

	if _, err := berth(t, "--tls-dir", dir, "node", "rm", id); err == nil || !strings.Contains(err.Error(), "not down") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rm of a node that is not down: %v", err)
	}
	out, err := berth(t, "--tls-dir", dir, "node", "rm", "--force", id)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{id + "\n", "refuse a removed node's certificate", "gossip key rotates", "join it again with", "berth cluster join-token worker"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node rm printed:\n%s\nwant %q", out, want)
		}
	}
	ls, err := berth(t, "--tls-dir", dir, "node", "ls")
	if err != nil || strings.Contains(ls, id[:12]) {
		t.Fatalf("node ls after rm (%v):\n%s", err, ls)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(w.ClientConfig())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := pb.NewDispatcherClient(conn).Session(ctx, &pb.SessionRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "node "+id+" was removed from the cluster; join again with a token" {
		t.Fatalf("session of the removed node: %v", err)
	}
}
