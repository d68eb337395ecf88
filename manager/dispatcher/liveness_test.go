package dispatcher

import (
	"errors"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

// TestReportDeadWeighsHeartbeats: gossip's verdict puts a node down unless
// it heartbeated within half a period; a follower takes no verdict.
func TestReportDeadWeighsHeartbeats(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil) // period 1s
	a := h.session("n1")
	if _, err := a.heartbeat(); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(400 * time.Millisecond)
	if down, err := h.d.ReportDead("n1", "gossip"); err != nil || down {
		t.Fatalf("ReportDead 400ms after a heartbeat = %v, %v; want spared", down, err)
	}
	h.clock.Advance(200 * time.Millisecond)
	if down, err := h.d.ReportDead("n1", "gossip"); err != nil || !down {
		t.Fatalf("ReportDead 600ms after a heartbeat = %v, %v; want down", down, err)
	}
	h.awaitNode("n1", pb.NodeStatus_STATE_DOWN, "node confirmed dead by gossip")

	f := newHarness(t, func(c *Config) { c.IsLeader = func() bool { return false } })
	if down, err := f.d.ReportDead("n1", "gossip"); !errors.Is(err, errNotLeading) || down {
		t.Fatalf("ReportDead on a follower = %v, %v; want refused", down, err)
	}
}
