package deploy

import (
	"testing"

	pb "berth/proto/berth/v1"
)

func TestTasksChange(t *testing.T) {
	base := func() *pb.ServiceSpec {
		return &pb.ServiceSpec{
			Task:     &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v1"}},
			Networks: []*pb.NetworkAttachment{{Target: "net1"}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(s *pb.ServiceSpec)
		want   bool
	}{
		{"nothing", func(*pb.ServiceSpec) {}, false},
		{"replicas", func(s *pb.ServiceSpec) { s.Replicas = new(int64) }, false},
		{"labels", func(s *pb.ServiceSpec) { s.Annotations = &pb.Annotations{Labels: map[string]string{"a": "b"}} }, false},
		{"image", func(s *pb.ServiceSpec) { s.Task.Container.Image = "app:v2" }, true},
		{"network added", func(s *pb.ServiceSpec) { s.Networks = append(s.Networks, &pb.NetworkAttachment{Target: "net2"}) }, true},
		{"network removed", func(s *pb.ServiceSpec) { s.Networks = nil }, true},
		{"network swapped", func(s *pb.ServiceSpec) { s.Networks[0].Target = "net2" }, true},
		{"alias added", func(s *pb.ServiceSpec) { s.Networks[0].Aliases = []string{"db"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.change(b)
			if got := TasksChange(base(), b); got != tc.want {
				t.Errorf("TasksChange = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNetworkChangeRollsTasks: tasks that run the service's task spec but
// were made for other networks are out of date, and the update replaces
// them slot by slot with tasks that record the new networks.
func TestNetworkChangeRollsTasks(t *testing.T) {
	f := newFixture(3, cfg(1, stopFirst, pause, 0, 0, 0))
	f.svc.PreviousSpec.Task = f.svc.Spec.Task // same image: only networks change
	f.svc.PreviousSpec.Networks = []*pb.NetworkAttachment{{Target: "net1"}}
	f.svc.Spec.Networks = []*pb.NetworkAttachment{{Target: "net1"}, {Target: "net2", Aliases: []string{"api"}}}
	for slot := range f.units {
		task := f.units[slot][0]
		task.Spec = f.svc.Spec.Task
		task.SpecNetworks = &pb.SpecNetworks{Attachments: f.svc.PreviousSpec.Networks}
	}
	for round := 1; round <= 3; round++ {
		p := f.plan()
		if len(p.replace) != 1 {
			t.Fatalf("round %d replaces slots %v, want one (parallelism 1)", round, f.slotsOf(p))
		}
		got := p.replace[0].create.GetSpecNetworks().GetAttachments()
		if !sameNetworks(got, f.svc.Spec.Networks) {
			t.Fatalf("new task records networks %v, want the service's %v", got, f.svc.Spec.Networks)
		}
		f.apply(p)
		f.runBatch(p)
	}
	p := f.plan()
	f.apply(p)
	if len(p.replace) != 0 || f.svc.UpdateStatus.GetState() != stCompleted {
		t.Fatalf("after every slot: replaces %v, status %v; want none and completed", f.slotsOf(p), f.svc.UpdateStatus)
	}
	for slot, ts := range f.units {
		if n := len(ts); n != 2 {
			t.Errorf("slot %d has %d tasks, want 2 (updated once)", slot, n)
		}
	}
}

// TestTasksBeforeSpecNetworksStay: a task made before tasks recorded their
// networks (none set) counts as current when its spec is, so upgrading the
// managers starts no update; one that records no networks for a service
// that now has some is out of date.
func TestTasksBeforeSpecNetworksStay(t *testing.T) {
	svc := &pb.Service{Spec: &pb.ServiceSpec{
		Task:     &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v1"}},
		Networks: []*pb.NetworkAttachment{{Target: "net1"}},
	}}
	legacy := &pb.Task{Spec: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v1"}}}
	if !isCurrent(legacy, svc) {
		t.Errorf("a task from before spec_networks is out of date")
	}
	none := &pb.Task{Spec: legacy.Spec, SpecNetworks: &pb.SpecNetworks{}}
	if isCurrent(none, svc) {
		t.Errorf("a task made for no networks is current on a service with one")
	}
	if made := newTask(svc, unit{service: "s", slot: 1}, t0); !isCurrent(made, svc) || made.GetSpecNetworks() == nil {
		t.Errorf("a new task is not current or records no networks: %v", made.GetSpecNetworks())
	}
}
