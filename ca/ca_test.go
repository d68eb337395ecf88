package ca

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func issue(t *testing.T, r *Root, nodeID, role string, lifetime time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csrPEM, err := NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = r.Issue(IssueRequest{CSRPEM: csrPEM, NodeID: nodeID, Role: role, Lifetime: lifetime}, now)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func TestRootRoundTripAndIdentity(t *testing.T) {
	r, err := NewRoot("cluster-a", now)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := r.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseRoot(r.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Hash() != r.Hash() || r2.ClusterID != "cluster-a" {
		t.Fatalf("parsed root differs: %s %s", r2.Hash(), r2.ClusterID)
	}
	other, _ := NewRoot("cluster-b", now)
	otherKey, _ := other.KeyPEM()
	if _, err := ParseRoot(r.CertPEM, otherKey); err == nil {
		t.Fatal("a key of another CA was accepted")
	}

	certPEM, _ := issue(t, r2, "node1", RoleWorker, 90*24*time.Hour)
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := IdentityOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{NodeID: "node1", Role: RoleWorker, ClusterID: "cluster-a"}) {
		t.Fatalf("identity %+v", id)
	}
	if got := cert.NotAfter.Sub(now); got != 90*24*time.Hour {
		t.Fatalf("lifetime %s", got)
	}
}

func TestIssueRejectsBadRequests(t *testing.T) {
	r, _ := NewRoot("c", now)
	_, csr, _ := NewKeyAndCSR()
	for _, tc := range []struct {
		req  IssueRequest
		want string
	}{
		{IssueRequest{CSRPEM: []byte("junk"), NodeID: "n", Role: RoleWorker, Lifetime: time.Hour}, "not a PEM certificate request"},
		{IssueRequest{CSRPEM: csr, NodeID: "n", Role: "admin", Lifetime: time.Hour}, `role "admin"`},
		{IssueRequest{CSRPEM: csr, Role: RoleWorker, Lifetime: time.Hour}, "node ID is empty"},
		{IssueRequest{CSRPEM: csr, NodeID: "n", Role: RoleWorker}, "lifetime"},
	} {
		if _, err := r.Issue(tc.req, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Issue(%+v) = %v, want error with %q", tc.req.Role, err, tc.want)
		}
	}
}

func TestTokens(t *testing.T) {
	r, _ := NewRoot("c", now)
	tok, err := NewToken(r.Hash())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseToken(" " + tok.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Matches(parsed) || parsed.CAHash != r.Hash() {
		t.Fatalf("round trip lost the token: %v", parsed)
	}
	rotated, _ := NewToken(r.Hash())
	if tok.Matches(rotated) {
		t.Fatal("a rotated token matches the old one")
	}
	for _, bad := range []string{"", "SWMTKN-1-abc", "BERTH-1-zz-yy", tok.String()[:len(tok.String())-1]} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestSeal(t *testing.T) {
	key, _ := NewClusterKey()
	sealed, err := Seal(key, []byte("ca key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("ca key")) {
		t.Fatal("sealed data holds the plaintext")
	}
	got, err := Open(key, sealed)
	if err != nil || string(got) != "ca key" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other, _ := NewClusterKey()
	if _, err := Open(other, sealed); err == nil {
		t.Fatal("opened with the wrong key")
	}
}

// TestMutualTLS runs real handshakes: a node of the cluster is accepted and
// identified; a node of another cluster is refused; a joining node that pins
// the wrong CA refuses the manager.
func TestMutualTLS(t *testing.T) {
	r, _ := NewRoot("c1", now.Add(-time.Hour))
	mgrCert, mgrKey := issueNow(t, r, "mgr1", RoleManager)
	mgr, err := NewCredentials(r.CertPEM, mgrCert, mgrKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", mgr.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				peers <- "handshake error"
			} else if st := tc.ConnectionState(); len(st.PeerCertificates) == 0 {
				peers <- "anonymous"
			} else {
				id, _ := IdentityOf(st.PeerCertificates[0])
				peers <- id.NodeID
			}
			io.WriteString(c, "x")
			c.Close()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}

	wCert, wKey := issueNow(t, r, "worker1", RoleWorker)
	worker, _ := NewCredentials(r.CertPEM, wCert, wKey)
	if err := dial(worker.ClientConfig()); err != nil {
		t.Fatalf("worker of the cluster refused: %v", err)
	}
	if p := <-peers; p != "worker1" {
		t.Fatalf("server saw %q, want worker1", p)
	}

	foreign, _ := NewRoot("c2", now.Add(-time.Hour))
	fCert, fKey := issueNow(t, foreign, "intruder", RoleWorker)
	intruder, _ := NewCredentials(foreign.CertPEM, fCert, fKey)
	if err := dial(intruder.ClientConfig()); err == nil {
		t.Fatal("node of another cluster connected")
	}
	<-peers

	pinned, err := PinnedConfig(r.CertPEM, r.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(pinned); err != nil {
		t.Fatalf("joining node with the right pin refused: %v", err)
	}
	if p := <-peers; p != "anonymous" {
		t.Fatalf("joining node seen as %q", p)
	}
	if _, err := PinnedConfig(r.CertPEM, foreign.Hash()); err == nil || !strings.Contains(err.Error(), "not the one the join token pins") {
		t.Fatalf("wrong pin accepted: %v", err)
	}
}

func issueNow(t *testing.T, r *Root, id, role string) ([]byte, []byte) {
	t.Helper()
	keyPEM, csrPEM, _ := NewKeyAndCSR()
	certPEM, err := r.Issue(IssueRequest{CSRPEM: csrPEM, NodeID: id, Role: role, Lifetime: time.Hour, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// TestDeferredVerification: with DeferredServerConfig the handshake
// completes whatever certificate the client holds, and VerifyClient then
// accepts the cluster's own nodes and refuses the others saying why.
func TestDeferredVerification(t *testing.T) {
	r, _ := NewRoot("c1", time.Now())
	mgrCert, mgrKey := issueNow(t, r, "mgr1", RoleManager)
	mgr, err := NewCredentials(r.CertPEM, mgrCert, mgrKey)
	if err != nil {
		t.Fatal(err)
	}
	if mgr.CAHash() != r.Hash() {
		t.Fatalf("CAHash %s, want %s", mgr.CAHash(), r.Hash())
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", mgr.DeferredServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		node string
		err  error
	}
	peers := make(chan seen, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			var s seen
			if s.err = tc.Handshake(); s.err == nil {
				chains, err := mgr.VerifyClient(tc.ConnectionState().PeerCertificates)
				if s.err = err; err == nil {
					id, _ := IdentityOf(chains[0][0])
					s.node = id.NodeID
				}
			}
			peers <- s
			io.WriteString(c, "x")
			c.Close()
		}
	}()
	dial := func(cfg *tls.Config) seen {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("read: %v", err)
		}
		return <-peers
	}

	wCert, wKey := issueNow(t, r, "worker1", RoleWorker)
	worker, _ := NewCredentials(r.CertPEM, wCert, wKey)
	if s := dial(worker.ClientConfig()); s.err != nil || s.node != "worker1" {
		t.Fatalf("worker of the cluster: %+v", s)
	}

	foreign, _ := NewRoot("c2", time.Now())
	fCert, fKey := issueNow(t, foreign, "intruder", RoleWorker)
	intruder, _ := NewCredentials(foreign.CertPEM, fCert, fKey)
	cfg := intruder.ClientConfig()
	cfg.RootCAs = r.Pool()
	s := dial(cfg)
	if !errors.Is(s.err, ErrForeignCertificate) || s.node != "" {
		t.Fatalf("node of another cluster: %+v", s)
	}
	for _, w := range []string{"issued by CA " + foreign.Hash()[:12], "this cluster's CA is " + r.Hash()[:12], "client bundle"} {
		if !strings.Contains(s.err.Error(), w) {
			t.Fatalf("refusal %q does not say %q", s.err, w)
		}
	}

	// An expired certificate of this cluster (presented by a client that
	// does not check its own) is refused as expired.
	keyPEM, csrPEM, _ := NewKeyAndCSR()
	oldPEM, err := r.Issue(IssueRequest{CSRPEM: csrPEM, NodeID: "old", Role: RoleClient, Lifetime: time.Hour}, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old, err := tls.X509KeyPair(oldPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s = dial(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: r.Pool(), ServerName: ManagerServerName, Certificates: []tls.Certificate{old}})
	if s.err == nil || !strings.Contains(s.err.Error(), `certificate "old" is valid from`) || errors.Is(s.err, ErrForeignCertificate) {
		t.Fatalf("expired certificate: %+v", s)
	}
}
