package manager

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestHeartbeatPeriodFollowsTheClusterSpec: the cluster spec's
// heartbeat_period is the period agents are told, from the session's
// first message on; changed, it is the answer to the very next heartbeat,
// in the same session. A period out of range is refused, naming the
// field, and changes nothing.
func TestHeartbeatPeriodFollowsTheClusterSpec(t *testing.T) {
	tm := newTestManager(t, "m0")
	tm.cfg.GossipPort = -1
	tm.cfg.HeartbeatPeriod = 2 * time.Second
	tm.mustStart()
	creds := workerCreds(t, tm)
	s, err := openSession(t, tm.m.Addr(), creds)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if got := s.first.GetHeartbeatPeriod().AsDuration(); got != 2*time.Second {
		t.Fatalf("first session message: period %s, want the spec's 2s", got)
	}
	client := pb.NewDispatcherClient(dialTLS(t, tm.m.Addr(), credentials.NewTLS(creds.ClientConfig())))
	beat := func() time.Duration {
		t.Helper()
		resp, err := client.Heartbeat(ctxFor(t, settle), &pb.HeartbeatRequest{SessionId: s.first.GetSessionId()})
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		return resp.GetPeriod().AsDuration()
	}
	if got := beat(); got != 2*time.Second {
		t.Fatalf("heartbeat answer: period %s, want 2s", got)
	}

	setPeriod := func(d time.Duration) error {
		var err error
		await.True(t, settle, func() bool {
			err = updateClusterSpec(ctxFor(t, settle), tm.control(), func(s *pb.ClusterSpec) { s.HeartbeatPeriod = durationpb.New(d) })
			return status.Code(err) != codes.Aborted
		}, "the cluster update is not out of sequence")
		return err
	}
	if err := setPeriod(300 * time.Millisecond); err != nil {
		t.Fatalf("set the heartbeat period: %v", err)
	}
	if got := beat(); got != 300*time.Millisecond {
		t.Fatalf("the heartbeat after the change: period %s, want 300ms", got)
	}

	err = setPeriod(time.Millisecond)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "heartbeat_period") {
		t.Fatalf("a 1ms period: %v, want InvalidArgument naming heartbeat_period", err)
	}
	if got := beat(); got != 300*time.Millisecond {
		t.Fatalf("after a refused change: period %s, want 300ms still", got)
	}
}

// updateClusterSpec reads the cluster, edits its spec and writes it back.
func updateClusterSpec(ctx context.Context, cc pb.ControlClient, edit func(*pb.ClusterSpec)) error {
	cur, err := cc.GetCluster(ctx, &pb.GetClusterRequest{})
	if err != nil {
		return err
	}
	spec := proto.Clone(cur.GetCluster().GetSpec()).(*pb.ClusterSpec)
	edit(spec)
	_, err = cc.UpdateCluster(ctx, &pb.UpdateClusterRequest{ClusterVersion: cur.GetCluster().GetMeta().GetVersion(), Spec: spec})
	return err
}
