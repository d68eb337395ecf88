package manager

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestAttachmentOnARealManager: a worker's agent attaches a standalone
// container to an attachable network through the leader, over TLS with
// its node certificate, on the store the suite runs (BERTH_TEST_STORE);
// a follower sends it to the leader; the network cannot be removed while
// the container is on it; a plain network refuses it; removing the node
// ends the attachment.
func TestAttachmentOnARealManager(t *testing.T) {
	c := newTestCluster(t, 2)
	l := c.waitLeader()
	ctx := ctxFor(t, 3*settle)
	cc := l.control()
	for _, spec := range []*pb.NetworkSpec{
		{Annotations: &pb.Annotations{Name: "shared"}, Attachable: true},
		{Annotations: &pb.Annotations{Name: "plain"}},
	} {
		if _, err := cc.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	w := workerCreds(t, l)
	node := w.Identity().NodeID
	if _, err := openSession(t, l.m.Addr(), w); err != nil {
		t.Fatal(err)
	}
	dc := pb.NewDispatcherClient(dialTLS(t, l.m.Addr(), credentials.NewTLS(w.ClientConfig())))
	// A follower sends the agent to the leader, as for its other calls.
	fc := pb.NewDispatcherClient(dialTLS(t, c.follower().m.Addr(), credentials.NewTLS(w.ClientConfig())))
	_, err := fc.AttachNetwork(ctx, &pb.AttachNetworkRequest{ContainerId: "web", Networks: []*pb.NetworkAttachment{{Target: "shared"}}})
	wantStatus(t, "attach on a follower", err, codes.Unavailable, "not the leader")

	_, err = dc.AttachNetwork(ctx, &pb.AttachNetworkRequest{ContainerId: "web", Networks: []*pb.NetworkAttachment{{Target: "plain"}}})
	wantStatus(t, "attach to a plain network", err, codes.FailedPrecondition, "network plain was created without --attachable")
	var got *pb.Task
	await.NoError(t, settle, func() error { // the allocator makes the default network first
		r, err := dc.AttachNetwork(ctx, &pb.AttachNetworkRequest{ContainerId: "web",
			Networks: []*pb.NetworkAttachment{{Target: "shared", Aliases: []string{"www"}}}})
		got = r.GetTask()
		return err
	}, "attach web to shared")
	if got.GetNodeId() != node || len(got.GetNetworks()) != 1 || len(got.GetNetworks()[0].GetAddresses()) != 1 ||
		!slices.Equal(got.GetNetworks()[0].GetAliases(), []string{"www"}) {
		t.Fatalf("attachment %v: want one address on shared, on node %s, with the alias", got, node)
	}

	_, err = cc.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "shared"})
	wantStatus(t, "rm of a network with a container on it", err, codes.FailedPrecondition, "standalone container attached: web on old-"+node[:6])
	tasks, err := cc.ListTasks(ctx, &pb.ListTasksRequest{})
	if err != nil || len(tasks.GetTasks()) != 0 {
		t.Fatalf("task list %v, %v: want no attachment listed", tasks.GetTasks(), err)
	}

	if _, err := cc.RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: node, Force: true}); err != nil {
		t.Fatal(err)
	}
	await.NoError(t, settle, func() error {
		r, err := cc.GetNetwork(ctx, &pb.GetNetworkRequest{NetworkId: "shared"})
		if err == nil && len(r.GetAttachments()) > 0 {
			err = fmt.Errorf("still attached: %v", r.GetAttachments())
		}
		return err
	}, "the removed node's attachment ends")
	if _, err := cc.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "shared"}); err != nil {
		t.Fatalf("rm once the node was removed: %v", err)
	}
}
