package agent

import (
	"context"
	"errors"
	"time"

	pb "berth/proto/berth/v1"
)

// A task's replacement in the same slot or global unit can be started on
// this node while the old task still stops and holds its published ports
// (a restart, or a rolling update's stop-first). Rather than fail the new
// task, bindPorts waits for those ports while a task being shut down here
// publishes them.
const (
	// portWait bounds the wait: longer than the default stop grace period.
	portWait  = 15 * time.Second
	portRetry = 100 * time.Millisecond
)

// bindPorts binds the task's published ports (see listenPorts), waiting
// up to portWait for ports that a task this node is shutting down holds.
// A port held by anything else fails the task at once.
func (c *controller) bindPorts(ctx context.Context) error {
	ports := TaskPorts(c.current())
	for waited := time.Duration(0); ; waited += portRetry {
		err := c.listenPorts(ctx, ports)
		if !errors.Is(err, ErrPortInUse) || waited >= portWait || c.env.portsStopping == nil || !c.env.portsStopping(c.id, ports) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-c.stopping:
			return err
		case <-time.After(portRetry):
		}
	}
}

// portsStopping reports whether a task on this node other than self, told
// to shut down, publishes one of ports on the node.
func (w *worker) portsStopping(self string, ports []*pb.PortConfig) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, c := range w.tasks {
		t := c.current()
		if id == self || t.GetDesiredState() < pb.TaskState_TASK_STATE_SHUTDOWN {
			continue
		}
		if samePort(TaskPorts(t), ports) {
			return true
		}
	}
	return false
}

// samePort reports whether two port lists publish a node port in common.
func samePort(a, b []*pb.PortConfig) bool {
	for _, p := range a {
		for _, q := range b {
			if p.GetPublishedPort() != 0 && p.GetPublishedPort() == q.GetPublishedPort() && p.GetProtocol() == q.GetProtocol() {
				return true
			}
		}
	}
	return false
}
