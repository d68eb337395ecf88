package controlapi

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// TestNetworkChangeStartsAnUpdate: attaching a network changes what the
// tasks run, so it starts a rolling update like a task spec change.
func TestNetworkChangeStartsAnUpdate(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	if _, err := s.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "back"}}}); err != nil {
		t.Fatal(err)
	}
	created, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 2)})
	if err != nil {
		t.Fatal(err)
	}
	svc := created.GetService()
	next := proto.Clone(svc.GetSpec()).(*pb.ServiceSpec)
	next.Networks = []*pb.NetworkAttachment{{Target: "back"}}
	resp, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: next})
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.GetService().GetUpdateStatus(); st.GetState() != pb.UpdateStatus_STATE_UPDATING {
		t.Fatalf("network attached: update status %v, want updating", st)
	}
}
