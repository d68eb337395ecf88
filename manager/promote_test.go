package manager

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"berth/ca"
	"berth/internal/await"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// fakeAgentSession is a worker's dispatcher session, driven by hand: it
// keeps the node ready with heartbeats and records the desired roles the
// session delivers.
type fakeAgentSession struct {
	roles chan pb.NodeSpec_Role
}

func openFakeSession(t *testing.T, addr string, creds *ca.Credentials, hostname string) *fakeAgentSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := pb.NewDispatcherClient(dialTLS(t, addr, credentials.NewTLS(creds.ClientConfig())))
	stream, err := client.Session(ctx, &pb.SessionRequest{Description: &pb.NodeDescription{Hostname: hostname, Addr: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first session message: %v", err)
	}
	s := &fakeAgentSession{roles: make(chan pb.NodeSpec_Role, 16)}
	if first.DesiredRole == nil {
		t.Fatal("the first session message carries no desired role")
	}
	s.roles <- first.GetDesiredRole()
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			if msg.DesiredRole != nil {
				s.roles <- msg.GetDesiredRole()
			}
		}
	}()
	go func() {
		for ctx.Err() == nil {
			if _, err := client.Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: first.GetSessionId()}); err != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return s
}

// waitRole waits for the session to deliver want.
func (s *fakeAgentSession) waitRole(t *testing.T, want pb.NodeSpec_Role) {
	t.Helper()
	deadline := time.After(settle)
	for {
		select {
		case r := <-s.roles:
			if r == want {
				return
			}
		case <-deadline:
			t.Fatalf("the session did not deliver desired role %v within %s", want, settle)
		}
	}
}

// managerCert asks NodeCA, with the worker's own certificate and no token,
// for a manager certificate, as a promoted agent does.
func managerCert(ctx context.Context, t *testing.T, addr string, w *ca.Credentials) (*pb.IssueNodeCertificateResponse, []byte, error) {
	keyPEM, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	conn := dialTLS(t, addr, credentials.NewTLS(w.ClientConfig()))
	resp, err := pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{
		Csr: csr, NodeId: w.Identity().NodeID, DesiredRole: pb.NodeSpec_ROLE_MANAGER.Enum(),
	})
	return resp, keyPEM, err
}

// TestPromoteWorkerInPlace: a ready worker promoted through the Control
// API learns it in its session, gets a manager certificate for its own
// node ID, and a manager run on that identity joins Raft, registers the
// node as a reachable manager and takes writes; demoted, that manager
// stops with ErrRemoved and the node is a worker again.
func TestPromoteWorkerInPlace(t *testing.T) {
	c := newTestCluster(t, 1)
	m0 := c.mgrs[0]
	cc := m0.control()
	ctx := ctxFor(t, 4*settle)
	w := workerCreds(t, m0)
	id := w.Identity().NodeID

	// A worker with no session (not ready) has no agent to carry it out.
	wantStatus(t, "promote a node that is not ready", setRole(ctx, cc, id, pb.NodeSpec_ROLE_MANAGER),
		codes.FailedPrecondition, "cannot promote", "unknown", "ready")

	sess := openFakeSession(t, m0.m.Addr(), w, "w1")
	sess.waitRole(t, pb.NodeSpec_ROLE_WORKER)
	await.NoError(t, settle, func() error {
		n, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
		if err == nil && n.GetNode().GetStatus().GetState() != pb.NodeStatus_STATE_READY {
			err = fmt.Errorf("node is %v", n.GetNode().GetStatus().GetState())
		}
		return err
	}, "the worker is ready")

	// Not promoted yet: no manager certificate.
	_, _, err := managerCert(ctx, t, m0.m.Addr(), w)
	wantStatus(t, "manager certificate before promotion", err, codes.PermissionDenied, "not promoted", "berth node promote")
	if etcdtest.OnEtcd() {
		// Agents are not given etcd's endpoints and certificates: the
		// promotion is refused, saying how to add a manager instead.
		wantStatus(t, "promote on etcd", setRole(ctx, cc, id, pb.NodeSpec_ROLE_MANAGER),
			codes.FailedPrecondition, "cannot promote", "state in etcd", "--join")
		return
	}

	if err := setRole(ctx, cc, id, pb.NodeSpec_ROLE_MANAGER); err != nil {
		t.Fatalf("promote the ready worker: %v", err)
	}
	got, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetNode().GetRole() != pb.NodeSpec_ROLE_WORKER || got.GetNode().GetSpec().GetDesiredRole() != pb.NodeSpec_ROLE_MANAGER {
		t.Fatalf("right after promote: role %v, desired %v; want worker until its manager runs", got.GetNode().GetRole(), got.GetNode().GetSpec().GetDesiredRole())
	}
	sess.waitRole(t, pb.NodeSpec_ROLE_MANAGER)

	resp, keyPEM, err := managerCert(ctx, t, m0.m.Addr(), w)
	if err != nil {
		t.Fatalf("manager certificate after promotion: %v", err)
	}
	if resp.GetRole() != pb.NodeSpec_ROLE_MANAGER || resp.GetNodeId() != id || len(resp.GetClusterKey()) == 0 {
		t.Fatalf("promoted node got role %v, node %s, cluster key of %d bytes", resp.GetRole(), resp.GetNodeId(), len(resp.GetClusterKey()))
	}

	pm := newTestManager(t, "w1")
	pm.cfg.SharedNode = true
	err = AdoptIdentity(pm.cfg.DataDir, Adopted{
		RootPEM: m0.m.rootPEM(), CertPEM: resp.GetCertificate(), KeyPEM: keyPEM,
		ClusterKey: resp.GetClusterKey(), Join: []string{m0.m.Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	pm.mustStart()
	if pm.m.NodeID() != id {
		t.Fatalf("the promoted node's manager runs as %s, want its node ID %s", pm.m.NodeID(), id)
	}
	c.mgrs = append(c.mgrs, pm)
	c.waitMembers(2)
	await.NoError(t, settle, func() error {
		n, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
		if err != nil {
			return err
		}
		node := n.GetNode()
		if node.GetRole() != pb.NodeSpec_ROLE_MANAGER || node.GetManagerStatus().GetReachability() != pb.ManagerStatus_REACHABILITY_REACHABLE {
			return fmt.Errorf("role %v, manager status %v", node.GetRole(), node.GetManagerStatus())
		}
		// The agent describes the node; its manager leaves that alone.
		if h, a := node.GetDescription().GetHostname(), node.GetDescription().GetAddr(); h != "w1" || a != "127.0.0.1" {
			return fmt.Errorf("description changed to %s %s", h, a)
		}
		return nil
	}, "the promoted node is listed as a reachable manager")

	// The new manager takes writes.
	if _, err := pm.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("via-promoted")}); err != nil {
		t.Fatalf("write through the promoted manager: %v", err)
	}
	await.NoError(t, settle, func() error {
		names, err := serviceNames(ctx, cc)
		if err == nil && !names["via-promoted"] {
			err = errors.New("not listed yet")
		}
		return err
	}, "the write through the promoted manager reaches the first one")

	// Demote: the node's manager loses its vote and stops; the session
	// says so; the node is a worker again.
	if err := setRole(ctx, cc, id, pb.NodeSpec_ROLE_WORKER); err != nil {
		t.Fatalf("demote the promoted node: %v", err)
	}
	sess.waitRole(t, pb.NodeSpec_ROLE_WORKER)
	select {
	case err := <-pm.done:
		pm.done <- err
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("the demoted node's manager stopped with %v; want ErrRemoved", err)
		}
	case <-time.After(settle):
		t.Fatal("the demoted node's manager still runs")
	}
	got, err = cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
	if err != nil || got.GetNode().GetRole() != pb.NodeSpec_ROLE_WORKER || got.GetNode().GetManagerStatus() != nil {
		t.Fatalf("after demotion: %v, %v", got.GetNode(), err)
	}
}
