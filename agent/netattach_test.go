package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	pb "berth/proto/berth/v1"
)

// fakeNet records attaches and detaches; attachErr fails every Attach.
type fakeNet struct {
	mu        sync.Mutex
	attachErr error
	attached  map[string]int // task ID → pid
	detached  []string
	running   func(id string) bool // whether task id's container ran at Attach
}

func (n *fakeNet) Attach(ctx context.Context, pid int, t *pb.Task) ([]*pb.PortConfig, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.attachErr != nil {
		return nil, n.attachErr
	}
	if n.running != nil && n.running(t.GetId()) {
		return nil, errors.New("attached after the container started")
	}
	n.attached[t.GetId()] = pid
	return t.GetEndpoint().GetPorts(), nil
}

func (n *fakeNet) Detach(t *pb.Task) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.attached, t.GetId())
	n.detached = append(n.detached, t.GetId())
}

// watch makes Attach check that exec has not run the task's container yet.
func (n *fakeNet) watch(exec *fakeExec) {
	n.running = func(id string) bool {
		_, ok := exec.containers[id] // exec.mu is held by its Run
		return ok
	}
}

// TestControllerAttachesBeforeStart: the task's endpoints go into its
// container before the container runs, with the container's pid.
func TestControllerAttachesBeforeStart(t *testing.T) {
	net := &fakeNet{attached: map[string]int{}}
	r := newRig(t, net)
	net.watch(r.exec)
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	net.mu.Lock()
	defer net.mu.Unlock()
	if pid := net.attached["t1"]; pid == 0 || pid != r.exec.get("t1").Pid() {
		t.Fatalf("attached with pid %d, container pid %d", pid, r.exec.get("t1").Pid())
	}
}

// TestControllerAttachFailureFailsStart: an endpoint that cannot be
// attached fails the task, runs no container and leaves no endpoint.
func TestControllerAttachFailureFailsStart(t *testing.T) {
	net := &fakeNet{attachErr: errors.New("network n1 is not built on this node"), attached: map[string]int{}}
	r := newRig(t, net)
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_FAILED)
	if !strings.Contains(st.GetErr(), "attach to the task's networks") || !strings.Contains(st.GetErr(), "not built") {
		t.Fatalf("err = %q, want the attach failure", st.GetErr())
	}
	if r.exec.runCount() != 0 {
		t.Fatal("a container ran although its networks could not be attached")
	}
	net.mu.Lock()
	defer net.mu.Unlock()
	if len(net.detached) == 0 {
		t.Fatal("the failed attach was not undone")
	}
}

// TestPortsWithoutOverlayAreRefused: an agent without overlay networking
// cannot publish (the rules point at the task's overlay address): the
// task fails saying so, and no container runs.
func TestPortsWithoutOverlayAreRefused(t *testing.T) {
	r := newRig(t)
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Endpoint = &pb.Endpoint{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	r.assign(t, true, tk)
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_FAILED)
	if !strings.Contains(st.GetErr(), "--overlay=false") || r.exec.runCount() != 0 {
		t.Fatalf("err = %q, containers run %d; want the overlay named and none run", st.GetErr(), r.exec.runCount())
	}
}

// TestPublishedPortsReachTheStatus: the ports the overlay published for
// the task are in its RUNNING status.
func TestPublishedPortsReachTheStatus(t *testing.T) {
	net := &fakeNet{attached: map[string]int{}}
	r := newRig(t, net)
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Endpoint = &pb.Endpoint{Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 30000}}}
	r.assign(t, true, tk)
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	if p := st.GetPorts(); len(p) != 1 || p[0].GetPublishedPort() != 30000 {
		t.Fatalf("status ports %v, want 30000->80", p)
	}
}
