package deploy

import (
	"testing"

	pb "berth/proto/berth/v1"
)

// A service's published ports travel with its tasks, so the scheduler can
// keep host ports apart and the agent can publish them.
func TestTasksCarryPublishedPorts(t *testing.T) {
	port := &pb.PortConfig{TargetPort: 8080, PublishedPort: 80, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}
	s := &pb.Service{Spec: &pb.ServiceSpec{Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{port}}}}
	ep := taskEndpoint(s)
	if len(ep.GetPorts()) != 1 || ep.GetPorts()[0].GetPublishedPort() != 80 || len(ep.GetSpec().GetPorts()) != 1 {
		t.Fatalf("task endpoint %v, want the spec's port 80->8080", ep)
	}
	ep.Ports[0].PublishedPort = 1
	if port.GetPublishedPort() != 80 {
		t.Fatal("the task's endpoint shares memory with the service spec")
	}
	allocated := &pb.Endpoint{Ports: []*pb.PortConfig{{TargetPort: 8080, PublishedPort: 30000}}}
	s.Endpoint = allocated
	if got := taskEndpoint(s).GetPorts()[0].GetPublishedPort(); got != 30000 {
		t.Fatalf("with an allocated endpoint the task publishes %d, want 30000", got)
	}
	if taskEndpoint(&pb.Service{Spec: &pb.ServiceSpec{}}) != nil {
		t.Fatal("a service without endpoint gave its tasks one")
	}
}
