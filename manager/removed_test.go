package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/internal/await"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
)

// nodeSession is a dispatcher session opened by hand with a node's
// certificate: its first message, and how the stream ended.
type nodeSession struct {
	first *pb.SessionMessage
	msgs  chan *pb.SessionMessage
	ended chan error
}

// openSession opens a session on the manager at addr with creds; the
// error is the refusal, if any.
func openSession(t *testing.T, addr string, creds *ca.Credentials) (*nodeSession, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := pb.NewDispatcherClient(dialTLS(t, addr, credentials.NewTLS(creds.ClientConfig())))
	stream, err := client.Session(ctx, &pb.SessionRequest{Description: &pb.NodeDescription{Hostname: "old-" + creds.Identity().NodeID[:6], Addr: "127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	s := &nodeSession{first: first, msgs: make(chan *pb.SessionMessage, 64), ended: make(chan error, 1)}
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				s.ended <- err
				return
			}
			select {
			case s.msgs <- msg:
			default:
			}
		}
	}()
	return s, nil
}

// removedMessage is what every manager answers a removed node.
func removedMessage(id string) string {
	return fmt.Sprintf("node %s was removed from the cluster; join again with a token", id)
}

// TestRemovedNodeRefused: after `berth node rm --force N`, N's certificate
// (still valid) opens no session, heartbeats nothing, renews nothing, on
// the leader and on a follower alike; N's open session ends; N is not
// listed again.
func TestRemovedNodeRefused(t *testing.T) {
	c := newTestCluster(t, 2)
	l, f := c.leader(), c.follower()
	ctx := ctxFor(t, 2*settle)
	w := workerCreds(t, l)
	id := w.Identity().NodeID

	s, err := openSession(t, l.m.Addr(), w)
	if err != nil {
		t.Fatalf("session of a fresh worker: %v", err)
	}
	if len(s.first.GetGossipKey()) == 0 {
		t.Fatal("the worker's session carries no gossip key")
	}
	if _, err := l.control().RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: id, Force: true}); err != nil {
		t.Fatalf("remove the node: %v", err)
	}
	select {
	case err := <-s.ended:
		wantStatus(t, "the open session of a removed node", err, codes.PermissionDenied, removedMessage(id))
	case <-time.After(settle):
		t.Fatal("the removed node's session is still open")
	}

	// The leader removed it: a session there is refused at once, and does
	// not bring the node back.
	if _, err := openSession(t, l.m.Addr(), w); statusOf(err) != (statusInfo{codes.PermissionDenied, removedMessage(id)}) {
		t.Errorf("the leader let the removed node open a session: %v", err)
	}
	nodes, err := l.control().ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.GetNodes() {
		if n.GetId() == id {
			t.Fatalf("the removed node is listed again, %v", n.GetStatus().GetState())
		}
	}

	for _, tm := range []*testManager{l, f} {
		// A follower learns of the removal through Raft: allow it a moment.
		await.NoError(t, settle, func() error {
			_, err := openSession(t, tm.m.Addr(), w)
			if err == nil {
				return errors.New("a session opened")
			}
			if got := statusOf(err); got.code != codes.PermissionDenied || got.msg != removedMessage(id) {
				return fmt.Errorf("refused with %v", err)
			}
			return nil
		}, "%s refuses a session of the removed node", tm.name)
		conn := dialTLS(t, tm.m.Addr(), credentials.NewTLS(w.ClientConfig()))
		_, err := pb.NewDispatcherClient(conn).Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: s.first.GetSessionId()})
		wantStatus(t, tm.name+": heartbeat of a removed node", err, codes.PermissionDenied, removedMessage(id))
		_, csr, err := ca.NewKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: csr})
		wantStatus(t, tm.name+": renewal of a removed node", err, codes.PermissionDenied, removedMessage(id))
	}
}

// TestDemotedManagerCertificateRefused: a demoted manager's manager
// certificate (and the client bundle it wrote) no longer calls the Control
// API, RaftMembership or Raft on any manager; once the node is removed,
// they say so.
func TestDemotedManagerCertificateRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader()
	var others []*testManager
	for _, tm := range c.mgrs {
		if tm != l {
			others = append(others, tm)
		}
	}
	b, a := others[0], others[1]
	ctx := ctxFor(t, 3*settle)
	b.waitBundle()
	client, err := ca.Dir(b.bundleDir()).Load()
	if err != nil {
		t.Fatal(err)
	}
	mgr := b.m.id.creds
	id := b.m.NodeID()
	if err := setRole(ctx, l.control(), id, pb.NodeSpec_ROLE_WORKER); err != nil {
		t.Fatalf("demote %s: %v", b.name, err)
	}
	select {
	case err := <-b.done:
		b.done <- err
	case <-time.After(settle):
		t.Fatalf("demoted manager %s still runs", b.name)
	}

	refused := func(what string, words ...string) {
		t.Helper()
		for _, tm := range []*testManager{l, a} {
			conn := dialTLS(t, tm.m.Addr(), credentials.NewTLS(mgr.ClientConfig()))
			await.NoError(t, settle, func() error {
				_, err := pb.NewControlClient(conn).ListServices(ctx, &pb.ListServicesRequest{})
				return wantRefused(err, words...)
			}, "%s: %s manager certificate calls Control", tm.name, what)
			_, err := pb.NewRaftMembershipClient(conn).Propose(ctx, &pb.ProposeRequest{Batch: &pb.StoreBatch{}})
			if err := wantRefused(err, words...); err != nil {
				t.Fatalf("%s: %s manager certificate, RaftMembership.Propose: %v", tm.name, what, err)
			}
			_, err = pb.NewRaftMembershipClient(conn).Join(ctx, &pb.JoinRequest{NodeId: id, Addr: b.m.AdvertiseAddr()})
			if err := wantRefused(err, words...); err != nil {
				t.Fatalf("%s: %s manager certificate, RaftMembership.Join: %v", tm.name, what, err)
			}
			cfg := mgr.ClientConfig()
			cfg.NextProtos = []string{mux.ProtoRaft}
			wantRaftRefused(t, what+" manager", tm.m.Addr(), cfg)
			cconn := dialTLS(t, tm.m.Addr(), credentials.NewTLS(client.ClientConfig()))
			_, err = pb.NewControlClient(cconn).ListServices(ctx, &pb.ListServicesRequest{})
			if err := wantRefused(err, words...); err != nil {
				t.Fatalf("%s: the client bundle of a %s manager: %v", tm.name, what, err)
			}
		}
	}
	refused("demoted", "demoted")

	if _, err := l.control().RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: id, Force: true}); err != nil {
		t.Fatalf("remove the demoted node: %v", err)
	}
	refused("removed", removedMessage(id))
	// The managers left work on.
	if _, err := a.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("after-removal")}); err != nil {
		t.Fatal(err)
	}
}

type statusInfo struct {
	code codes.Code
	msg  string
}

func statusOf(err error) statusInfo {
	st := status.Convert(err)
	return statusInfo{st.Code(), st.Message()}
}

// wantRefused is nil when err is PermissionDenied saying every word.
func wantRefused(err error, words ...string) error {
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied {
		return fmt.Errorf("got %v, want PermissionDenied", err)
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			return fmt.Errorf("%q does not say %q", st.Message(), w)
		}
	}
	return nil
}
