package agent

import (
	"context"

	pb "berth/proto/berth/v1"
)

// attachAdopted registers a running container that an earlier agent
// started with the overlay again: its interfaces are there, its VIP table
// and the node's published ports are rewritten from this agent's view.
func (c *controller) attachAdopted(ctx context.Context) {
	if c.mon == nil || c.ctr == nil || c.status.GetState() != pb.TaskState_TASK_STATE_RUNNING || c.env.net == nil {
		return
	}
	t := c.current()
	ports, err := c.env.net.Attach(ctx, c.ctr.Pid(), t)
	if err != nil {
		c.setStatus(c.attachFailed(ctx, err))
		return
	}
	c.ports = ports
	if len(ports) > 0 {
		c.setStatus(c.newStatus(pb.TaskState_TASK_STATE_RUNNING, "started"))
	}
}

// attachFailed stops a container whose endpoints could not be attached
// and fails its task.
func (c *controller) attachFailed(ctx context.Context, err error) *pb.TaskStatus {
	c.stopMonitor()
	c.detachNetworks(c.current())
	if serr := c.stop(ctx); serr != nil {
		c.log.Warn("stop container whose endpoints could not be attached", "err", serr)
	}
	return c.fatal(err)
}

// publishedPorts are the task's ports as published on this node, for its
// status.
func (c *controller) publishedPorts() []*pb.PortConfig { return c.ports }
