package dispatcher

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"berth/internal/await"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.session("n1")
	resp, err := a.heartbeat()
	if err != nil || resp.GetPeriod().AsDuration() != time.Second {
		t.Fatalf("heartbeat: %v, %v; want period 1s", resp, err)
	}
	_, err = h.client().Heartbeat(as(context.Background(), "n1"), &pb.HeartbeatRequest{SessionId: "bogus"})
	if codeOf(err) != "FailedPrecondition" {
		t.Errorf("heartbeat with an unknown session: %v, want FailedPrecondition", err)
	}
	// A session ID is no good from another node.
	_, err = h.client().Heartbeat(as(context.Background(), "n2"), &pb.HeartbeatRequest{SessionId: a.sid})
	if codeOf(err) != "FailedPrecondition" {
		t.Errorf("heartbeat with another node's session: %v, want FailedPrecondition", err)
	}
}

func TestHeartbeatsLapseNodeGoesDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	live, silent := h.session("n1"), h.session("n2")
	// n1 heartbeats within every period; n2 never does.
	for range 4 {
		h.clock.Advance(time.Second)
		if _, err := live.heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	h.awaitNode("n2", pb.NodeStatus_STATE_DOWN, ReasonHeartbeat)
	if err := silent.ended(); err == nil {
		t.Fatal("the session of a node put down is still open")
	}
	if _, err := silent.heartbeat(); codeOf(err) != "FailedPrecondition" {
		t.Errorf("heartbeat after expiry: %v, want FailedPrecondition", err)
	}
	if s := h.node("n1").GetStatus(); s.GetState() != pb.NodeStatus_STATE_READY {
		t.Errorf("n1 heartbeating is %v", s)
	}
	// The node comes back with a new session.
	h.session("n2")
	h.awaitNode("n2", pb.NodeStatus_STATE_READY, "")
}

func TestSessionEndedNodeGoesDownAfterGrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	gone, back, marker := h.session("n1"), h.session("n2"), h.session("n3")
	gone.cancel()
	back.cancel()
	gone.ended()
	back.ended()
	// Wait until the dispatcher saw both streams end: their sessions are
	// no longer live.
	await.True(t, wait, func() bool {
		_, e1 := gone.heartbeat()
		_, e2 := back.heartbeat()
		return codeOf(e1) == "FailedPrecondition" && codeOf(e2) == "FailedPrecondition"
	}, "the dispatcher still takes heartbeats of ended sessions")
	// n2 reconnects within the grace and heartbeats; n1 does not.
	back = h.session("n2")
	h.clock.Advance(2 * time.Second)
	if _, err := back.heartbeat(); err != nil {
		t.Fatal(err)
	}
	// The grace has not passed for anyone yet: marker's deadline (3s) is the
	// soonest after n1's (also 3s), so once marker is down, n1 must be too.
	h.clock.Advance(2 * time.Second)
	_ = marker // never heartbeats: down at the same deadline as n1
	h.awaitNode("n3", pb.NodeStatus_STATE_DOWN, ReasonHeartbeat)
	h.awaitNode("n1", pb.NodeStatus_STATE_DOWN, ReasonSessionEnded)
	if s := h.node("n2").GetStatus(); s.GetState() != pb.NodeStatus_STATE_READY {
		t.Errorf("n2 reconnected within the grace but is %v", s)
	}
}

func TestMarkDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.session("n1")
	if err := h.d.MarkDown("n1", "gossip: node dead"); err != nil {
		t.Fatal(err)
	}
	h.awaitNode("n1", pb.NodeStatus_STATE_DOWN, "gossip: node dead")
	if err := a.ended(); codeOf(err) != "Unavailable" {
		t.Errorf("session after MarkDown: %v, want Unavailable", err)
	}
	if _, err := a.heartbeat(); codeOf(err) != "FailedPrecondition" {
		t.Errorf("heartbeat after MarkDown: %v, want FailedPrecondition", err)
	}
}

func TestNewLeaderGivesReadyNodesAGrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.stopRun()
	h.update(func(tx store.Tx) error {
		for _, id := range []string{"n1", "n2"} {
			n := workerNode(id)
			n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.start(ctx)
	// n1 reconnects to the new leader in time; n2 does not.
	a := h.session("n1")
	h.clock.Advance(2 * time.Second)
	if _, err := a.heartbeat(); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Second)
	h.awaitNode("n2", pb.NodeStatus_STATE_DOWN, ReasonHeartbeat)
	if s := h.node("n1").GetStatus(); s.GetState() != pb.NodeStatus_STATE_READY {
		t.Errorf("n1 reconnected but is %v", s)
	}
}

func TestRunEndingEndsSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.session("n1")
	h.stopRun()
	if err := a.ended(); codeOf(err) != "Unavailable" {
		t.Fatalf("session after the term ended: %v, want Unavailable", err)
	}
	if _, err := h.open("n1"); codeOf(err) != "Unavailable" {
		t.Errorf("new session without a term: %v, want Unavailable", err)
	}
}

func TestFollowerRedirectsToLeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.IsLeader = func() bool { return false }
		c.LeaderAddr = func() (string, string) { return "m2", "10.0.0.2:4242" }
	})
	_, err := h.open("n1")
	if codeOf(err) != "Unavailable" {
		t.Fatalf("session on a follower: %v, want Unavailable", err)
	}
	var leader *pb.WeightedPeer
	for _, d := range status.Convert(err).Details() {
		if p, ok := d.(*pb.WeightedPeer); ok {
			leader = p
		}
	}
	if leader.GetAddr() != "10.0.0.2:4242" || leader.GetNodeId() != "m2" {
		t.Fatalf("redirect detail %v, want the leader m2 at 10.0.0.2:4242", leader)
	}
	_, err = h.client().Heartbeat(as(context.Background(), "n1"), &pb.HeartbeatRequest{SessionId: "x"})
	if codeOf(err) != "Unavailable" {
		t.Errorf("heartbeat on a follower: %v, want Unavailable", err)
	}
}

// Gossip's verdict is not taken against a node that just heartbeated.
func TestMarkDownIfSilentSparesANodeJustHeard(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.session("n1")
	h.clock.Advance(300 * time.Millisecond)
	if _, err := a.heartbeat(); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(100 * time.Millisecond)
	down, err := h.d.MarkDownIfSilent("n1", "gossip: node dead", 500*time.Millisecond)
	if err != nil || down {
		t.Fatalf("MarkDownIfSilent 100ms after a heartbeat = %v, %v; want spared", down, err)
	}
	if _, err := a.heartbeat(); err != nil {
		t.Fatalf("the spared node's session ended: %v", err)
	}
	h.clock.Advance(600 * time.Millisecond)
	down, err = h.d.MarkDownIfSilent("n1", "gossip: node dead", 500*time.Millisecond)
	if err != nil || !down {
		t.Fatalf("MarkDownIfSilent 600ms after a heartbeat = %v, %v; want down", down, err)
	}
	h.awaitNode("n1", pb.NodeStatus_STATE_DOWN, "gossip: node dead")
}
