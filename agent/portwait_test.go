package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

// portTask is a task publishing port on the node, and a controller for it.
func portTask(t *testing.T, port uint32, stopping func(string, []*pb.PortConfig) bool) *controller {
	t.Helper()
	task := &pb.Task{Id: "new", DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Endpoint: &pb.Endpoint{Spec: &pb.EndpointSpec{Ports: []*pb.PortConfig{
			{TargetPort: 8080, PublishedPort: port, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}}}}}
	c := newController(task, &taskEnv{log: slog.New(slog.DiscardHandler), now: time.Now, portsStopping: stopping})
	t.Cleanup(c.unpublish)
	return c
}

func holdPort(t *testing.T) (net.Listener, uint32) {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	return l, uint32(l.Addr().(*net.TCPAddr).Port)
}

// TestBindPortsWaitsForAStoppingTask: the port of a task this node shuts
// down is waited for; the new task binds it once the old one lets go.
func TestBindPortsWaitsForAStoppingTask(t *testing.T) {
	old, port := holdPort(t)
	c := portTask(t, port, func(self string, ports []*pb.PortConfig) bool {
		return self == "new" && ports[0].GetPublishedPort() == port
	})
	time.AfterFunc(300*time.Millisecond, func() { old.Close() }) // the old task's container stops
	if err := c.bindPorts(context.Background()); err != nil {
		t.Fatalf("bind after the stopping task let go: %v", err)
	}
}

// TestBindPortsFailsOnAPortTakenOtherwise: a port held by anything but a
// stopping task fails at once, as before.
func TestBindPortsFailsOnAPortTakenOtherwise(t *testing.T) {
	l, port := holdPort(t)
	defer l.Close()
	c := portTask(t, port, func(string, []*pb.PortConfig) bool { return false })
	begin := time.Now()
	if err := c.bindPorts(context.Background()); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("err %v, want ErrPortInUse", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("failed after %v; a port held by no stopping task should fail at once", d)
	}
}

func TestWorkerPortsStopping(t *testing.T) {
	w := newWorker(&taskEnv{log: slog.New(slog.DiscardHandler), now: time.Now}, newSecretStore())
	ports := []*pb.PortConfig{{TargetPort: 8080, PublishedPort: 8080}}
	old := &pb.Task{Id: "old", DesiredState: pb.TaskState_TASK_STATE_SHUTDOWN, Endpoint: &pb.Endpoint{Spec: &pb.EndpointSpec{Ports: ports}}}
	w.tasks["old"] = newController(old, w.env)
	if !w.portsStopping("new", ports) {
		t.Error("a task shut down on this node holds 8080: want true")
	}
	if w.portsStopping("new", []*pb.PortConfig{{TargetPort: 8080, PublishedPort: 9090}}) || w.portsStopping("old", ports) {
		t.Error("another port, or the stopping task itself: want false")
	}
}
