package controlapi

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestUpdateStatusFollowsChanges: a change of what tasks run starts an
// update (and resumes a paused one), a change of replicas alone keeps the
// status, a rollback starts one.
func TestUpdateStatusFollowsChanges(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	created, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 2)})
	if err != nil {
		t.Fatal(err)
	}
	svc := created.GetService()
	change := func(edit func(*pb.ServiceSpec), rollback bool) *pb.Service {
		t.Helper()
		next := proto.Clone(svc.GetSpec()).(*pb.ServiceSpec)
		edit(next)
		resp, err := s.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: next, Rollback: rollback})
		if err != nil {
			t.Fatal(err)
		}
		svc = resp.GetService()
		return svc
	}
	if st := change(func(sp *pb.ServiceSpec) { sp.Replicas = proto.Int64(3) }, false).GetUpdateStatus(); st != nil {
		t.Fatalf("replicas changed: update status %v, want none", st)
	}
	st := change(func(sp *pb.ServiceSpec) { sp.Task.Container.Env = []string{"V=2"} }, false).GetUpdateStatus()
	if st.GetState() != pb.UpdateStatus_STATE_UPDATING || st.GetStartedAt() == nil {
		t.Fatalf("task spec changed: update status %v, want updating", st)
	}
	// Paused by the updater; a scale resumes it, as in Docker Swarm.
	if err := s.update(ctx, func(tx store.Tx) error {
		cur := proto.Clone(tx.GetService(svc.GetId())).(*pb.Service)
		cur.UpdateStatus.State = pb.UpdateStatus_STATE_PAUSED
		return tx.UpdateService(cur)
	}); err != nil {
		t.Fatal(err)
	}
	svc = mustGet(t, s, svc.GetId())
	if st := change(func(sp *pb.ServiceSpec) { sp.Replicas = proto.Int64(4) }, false).GetUpdateStatus(); st.GetState() != pb.UpdateStatus_STATE_UPDATING {
		t.Fatalf("update of a paused service: status %v, want updating again", st)
	}
	st = change(func(*pb.ServiceSpec) {}, true).GetUpdateStatus()
	if st.GetState() != pb.UpdateStatus_STATE_ROLLBACK_STARTED || st.GetMessage() != "manually requested rollback" {
		t.Fatalf("rollback: status %v", st)
	}
}

func mustGet(t *testing.T, s *Server, id string) *pb.Service {
	t.Helper()
	resp, err := s.GetService(context.Background(), &pb.GetServiceRequest{ServiceId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetService()
}
