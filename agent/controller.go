package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/agent/image"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// taskEnv is what every task controller shares.
type taskEnv struct {
	exec    Executor
	secrets secretFiles
	// report hands a status to the reporter; it must not block.
	report func(taskID string, st *pb.TaskStatus)
	// forget, if set, is told when a task has left the node.
	forget func(taskID string)
	// net gives containers their overlay interfaces, VIPs and published
	// ports; nil runs them with loopback only.
	net networking
	// dns gives containers on overlay networks the node's DNS server as
	// their resolver; nil leaves them their image's.
	dns resolvers
	// drain is how long a stopping task that takes traffic through
	// endpoints (overlay networks, published ports) keeps serving before
	// its container is signalled; see controller.drain.
	drain time.Duration
	// pause, if set, stands in for the drain's timer (tests).
	pause func(ctx context.Context, d time.Duration)
	now   func() time.Time
	log   *slog.Logger
}

// secretFiles puts the secrets and configs a task references where its
// container can mount them, and removes them with the task.
type secretFiles interface {
	Mounts(taskID string, c *pb.ContainerSpec) ([]runtime.Mount, error)
	Remove(taskID string) error
	// IDs lists the tasks that have secret or config files.
	IDs() []string
}

// resolvers writes a task's resolv.conf, pointing at the node's DNS
// server, and removes it with the task.
type resolvers interface {
	Mounts(t *pb.Task) ([]runtime.Mount, error)
	Remove(taskID string) error
	// IDs lists the tasks that have a resolv.conf.
	IDs() []string
}

// errIdle says the controller has nothing to do until its task changes.
var errIdle = errors.New("idle")

// controller converges one task's container to the task's desired state.
// Its run goroutine owns everything below mu; the reconciler only calls
// update and remove.
type controller struct {
	id  string
	env *taskEnv
	log *slog.Logger

	mu       sync.Mutex
	task     *pb.Task
	changed  chan struct{} // signalled (cap 1) on every update
	stopping chan struct{} // closed once desired state reaches SHUTDOWN
	removed  chan struct{} // closed once the task leaves the assignment
	stopOnce sync.Once
	rmOnce   sync.Once

	status  *pb.TaskStatus
	prep    *runtime.Spec // built by prepare, run by start
	ctr     Container
	mon     *monitor
	started *timestamppb.Timestamp
	health  pb.ContainerStatus_Health
	// imageHealth is the image's HEALTHCHECK, known once the image is
	// pulled (an agent that adopted a running container does not know it).
	imageHealth *image.HealthConfig
	ports       []*pb.PortConfig // the task's published ports, while its container runs
	cleaned     bool
}

func newController(t *pb.Task, env *taskEnv) *controller {
	c := &controller{
		id:       t.GetId(),
		env:      env,
		log:      env.log.With("task", t.GetId(), "service", t.GetServiceId()),
		changed:  make(chan struct{}, 1),
		stopping: make(chan struct{}),
		removed:  make(chan struct{}),
	}
	c.update(t)
	return c
}

// update gives the controller the task's latest assignment.
func (c *controller) update(t *pb.Task) {
	c.mu.Lock()
	c.task = t
	c.mu.Unlock()
	if t.GetDesiredState() >= pb.TaskState_TASK_STATE_SHUTDOWN {
		c.stopOnce.Do(func() { close(c.stopping) })
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// remove tells the controller its task left the assignment: it stops and
// deletes the container and then ends.
func (c *controller) remove() {
	c.stopOnce.Do(func() { close(c.stopping) })
	c.rmOnce.Do(func() { close(c.removed) })
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *controller) current() *pb.Task {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.task
}

func (c *controller) isRemoved() bool {
	select {
	case <-c.removed:
		return true
	default:
		return false
	}
}

// run steps the task until it is removed and cleaned up, or ctx ends.
// An ending ctx (the agent exiting) leaves the container running.
func (c *controller) run(ctx context.Context) {
	defer c.stopMonitor()
	c.adopt(ctx)
	c.attachAdopted(ctx)
	for ctx.Err() == nil {
		next, err := c.step(ctx)
		switch {
		case errors.Is(err, errDone):
			return
		case errors.Is(err, errIdle):
			select {
			case <-c.changed:
			case <-ctx.Done():
			}
		case err != nil && ctx.Err() == nil:
			c.log.Warn("task step failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
			case <-c.changed:
			case <-ctx.Done():
			}
		}
		if next != nil {
			c.setStatus(next)
		}
	}
}

// errDone says the task is removed and cleaned up.
var errDone = errors.New("done")

// step makes one move of the task's state machine (swarmkit's exec.Do):
// it returns the next status to report, or nil and why not.
func (c *controller) step(ctx context.Context) (*pb.TaskStatus, error) {
	t, st := c.current(), c.status.GetState()
	desired := t.GetDesiredState()
	gone := c.isRemoved() || desired >= pb.TaskState_TASK_STATE_REMOVE
	switch {
	case (gone || desired >= pb.TaskState_TASK_STATE_SHUTDOWN) && !terminal(st):
		return c.shutdown(ctx)
	case gone && !c.cleaned:
		c.cleanup(ctx)
		return nil, nil
	case c.isRemoved():
		return nil, errDone
	case terminal(st):
		return nil, errIdle
	case st < pb.TaskState_TASK_STATE_PREPARING:
		return c.newStatus(pb.TaskState_TASK_STATE_PREPARING, "preparing"), nil
	case st == pb.TaskState_TASK_STATE_PREPARING:
		return c.prepare(ctx)
	case st == pb.TaskState_TASK_STATE_STARTING:
		return c.start(ctx)
	default: // running
		return c.wait(ctx)
	}
}

func terminal(s pb.TaskState) bool { return s > pb.TaskState_TASK_STATE_RUNNING }

// setStatus records and reports a status, never one that moves backwards.
func (c *controller) setStatus(next *pb.TaskStatus) {
	if next.GetState() < c.status.GetState() {
		c.log.Error("refusing to move a task backwards", "from", c.status.GetState(), "to", next.GetState())
		return
	}
	c.status = next
	c.log.Debug("task status", "state", next.GetState(), "message", next.GetMessage(), "err", next.GetErr())
	if !c.isRemoved() {
		c.env.report(c.id, proto.Clone(next).(*pb.TaskStatus))
	}
}

func (c *controller) newStatus(state pb.TaskState, msg string) *pb.TaskStatus {
	return &pb.TaskStatus{
		State:     state,
		Timestamp: timestamppb.New(c.env.now()),
		Message:   msg,
		Container: c.containerStatus(),
		Ports:     c.publishedPorts(),
	}
}

func (c *controller) containerStatus() *pb.ContainerStatus {
	if c.ctr == nil {
		return nil
	}
	cs := &pb.ContainerStatus{ContainerId: c.ctr.ID(), Pid: int64(c.ctr.Pid()), StartedAt: c.started, Health: c.health}
	if c.mon != nil && c.health != pb.ContainerStatus_HEALTH_HEALTHY {
		cs.HealthOutput = c.mon.lastOutput()
	}
	if ex, ok := c.ctr.Exited(); ok {
		cs.ExitCode = int32(ex.Code)
		cs.ExitReason = ex.Reason
		cs.FinishedAt = timestamppb.New(ex.FinishedAt)
	}
	return cs
}

// fatal ends the task with err: REJECTED before it started, FAILED after
// (swarmkit's rule).
func (c *controller) fatal(err error) *pb.TaskStatus {
	state := pb.TaskState_TASK_STATE_FAILED
	if c.status.GetState() < pb.TaskState_TASK_STATE_STARTING {
		state = pb.TaskState_TASK_STATE_REJECTED
	}
	msg := "failed"
	if state == pb.TaskState_TASK_STATE_REJECTED {
		msg = "rejected"
	}
	s := c.newStatus(state, msg)
	s.Err = err.Error()
	c.log.Warn("task failed", "state", state, "err", err)
	return s
}

// prepare pulls the image and makes the rootfs, then moves to STARTING.
func (c *controller) prepare(ctx context.Context) (*pb.TaskStatus, error) {
	opCtx, cancel := c.untilStopping(ctx)
	defer cancel()
	if err := c.build(opCtx); err != nil {
		if opCtx.Err() != nil {
			return nil, ctx.Err() // stopping (step again) or the agent exiting
		}
		return c.fatal(err), nil
	}
	return c.newStatus(pb.TaskState_TASK_STATE_STARTING, "starting"), nil
}

// build pulls the task's image, prepares its rootfs and secrets, and
// keeps the runtime spec for start.
func (c *controller) build(ctx context.Context) error {
	t := c.current()
	cs := t.GetSpec().GetContainer()
	if cs.GetImage() == "" {
		return errors.New("invalid spec: the task has no image")
	}
	// Progress arrives on the puller's goroutine: report it directly, and
	// only while the task is still preparing.
	quiet := c.status.GetState() != pb.TaskState_TASK_STATE_PREPARING
	pr := newPullProgress(c.env.now, func(msg string) {
		if !quiet && !c.isRemoved() {
			c.env.report(c.id, &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PREPARING, Timestamp: timestamppb.New(c.env.now()), Message: msg})
		}
	})
	opts, err := pullOptions(cs.GetImage(), cs.GetRegistryAuth())
	if err != nil {
		pr.close()
		return fmt.Errorf("pull %s: %w", cs.GetImage(), err)
	}
	img, err := c.env.exec.Pull(ctx, cs.GetImage(), pr.update, opts...)
	pr.close()
	if err != nil {
		return fmt.Errorf("pull %s: %w", cs.GetImage(), pullHint(err, cs.GetRegistryAuth()))
	}
	c.imageHealth = img.Config.Healthcheck
	rootfs, err := c.env.exec.Prepare(ctx, c.id, img)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	spec, err := RuntimeSpec(c.id, rootfs, img.Config, cs, t.GetSpec().GetResources().GetLimits())
	if err != nil {
		return fmt.Errorf("invalid spec: %w", err)
	}
	spec.Labels = withTaskLabels(spec.Labels, t)
	mounts, err := c.env.secrets.Mounts(c.id, cs)
	if err != nil {
		return err
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	if c.env.dns != nil {
		mounts, err := c.env.dns.Mounts(t)
		if err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, mounts...)
	}
	c.prep = &spec
	return nil
}

// start runs the container and moves to RUNNING.
func (c *controller) start(ctx context.Context) (*pb.TaskStatus, error) {
	if c.prep == nil { // restarted agent: the spec was built by its predecessor
		opCtx, cancel := c.untilStopping(ctx)
		err := c.build(opCtx)
		cancel()
		if err != nil {
			if opCtx.Err() != nil {
				return nil, ctx.Err()
			}
			return c.fatal(err), nil
		}
	}
	task := c.current()
	if c.env.net == nil && len(task.GetEndpoint().GetPorts()) > 0 {
		return c.fatal(errNoOverlay), nil
	}
	var ports []*pb.PortConfig
	spec := *c.prep
	spec.PreStart = c.attachNetworks(task, &ports)
	ctr, err := c.env.exec.Run(ctx, spec)
	existed := errors.Is(err, runtime.ErrExists)
	if existed {
		ctr, _ = c.env.exec.Container(c.id)
	} else if err != nil {
		c.detachNetworks(task)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return c.fatal(fmt.Errorf("starting container failed: %w", err)), nil
	}
	if ctr == nil {
		c.detachNetworks(task)
		return c.fatal(fmt.Errorf("starting container failed: %w", err)), nil
	}
	c.ports = ports
	c.attach(ctx, ctr, timestamppb.New(c.env.now()))
	if existed && spec.PreStart != nil { // attaching one attached before changes nothing
		if err := spec.PreStart(ctx, ctr.Pid()); err != nil {
			return c.attachFailed(ctx, err), nil
		}
		c.ports = ports
	}
	return c.newStatus(pb.TaskState_TASK_STATE_RUNNING, "started"), nil
}

// attach makes ctr the task's container and starts watching it.
func (c *controller) attach(ctx context.Context, ctr Container, started *timestamppb.Timestamp) {
	c.ctr, c.started = ctr, started
	hc := healthConfig(withImageHealth(c.current().GetSpec().GetContainer().GetHealthcheck(), c.imageHealth))
	if hc != nil && c.health == pb.ContainerStatus_HEALTH_NONE {
		c.health = pb.ContainerStatus_HEALTH_STARTING
	}
	c.mon = startMonitor(ctx, ctr, hc, c.health, c.env.now, c.log)
}

func (c *controller) stopMonitor() {
	if c.mon != nil {
		c.mon.stop()
		c.mon = nil
	}
}

// wait watches the running container until it exits, turns unhealthy,
// reports a health change, or the task changes.
func (c *controller) wait(ctx context.Context) (*pb.TaskStatus, error) {
	if c.mon == nil {
		return nil, errIdle
	}
	select {
	case ex := <-c.mon.exit:
		c.stopMonitor()
		c.detachNetworks(c.current())
		return c.exited(ex), nil
	case h := <-c.mon.health:
		c.health = h
		if h != pb.ContainerStatus_HEALTH_UNHEALTHY {
			return c.newStatus(pb.TaskState_TASK_STATE_RUNNING, healthMessage(h)), nil
		}
		out := c.mon.lastOutput()
		c.stopMonitor()
		c.stop(ctx)
		c.detachNetworks(c.current())
		s := c.newStatus(pb.TaskState_TASK_STATE_FAILED, "failed")
		s.Err = "unhealthy container"
		if out != "" {
			s.Err += ": " + strings.TrimSpace(out)
			if s.Container != nil {
				s.Container.HealthOutput = out
			}
		}
		return s, nil
	case <-c.changed:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func healthMessage(h pb.ContainerStatus_Health) string {
	if h == pb.ContainerStatus_HEALTH_HEALTHY {
		return "healthy"
	}
	return "started"
}

// exited turns a container's end into COMPLETE or FAILED.
func (c *controller) exited(ex runtime.ExitStatus) *pb.TaskStatus {
	if ex.Code == 0 && !ex.OOMKilled {
		return c.newStatus(pb.TaskState_TASK_STATE_COMPLETE, "finished")
	}
	s := c.newStatus(pb.TaskState_TASK_STATE_FAILED, "failed")
	s.Err = fmt.Sprintf("task: non-zero exit (%d)", ex.Code)
	if ex.Reason != "" && ex.Reason != runtime.ReasonError {
		s.Err += ": " + ex.Reason
	}
	return s
}

// shutdown stops the container, if one runs, and moves to SHUTDOWN.
func (c *controller) shutdown(ctx context.Context) (*pb.TaskStatus, error) {
	c.stopMonitor()
	if c.ctr != nil {
		if ex, ok := c.ctr.Exited(); ok && c.status.GetState() == pb.TaskState_TASK_STATE_RUNNING {
			c.detachNetworks(c.current())
			return c.exited(ex), nil // it ended on its own before we stopped it
		}
		c.drain(ctx)
		if err := c.stop(ctx); err != nil {
			return nil, err
		}
	}
	c.detachNetworks(c.current())
	return c.newStatus(pb.TaskState_TASK_STATE_SHUTDOWN, "shutdown"), nil
}

// stop stops a running container within the spec's grace period.
func (c *controller) stop(ctx context.Context) error {
	if _, ok := c.ctr.Exited(); ok {
		return nil
	}
	grace := runtime.DefaultStopGrace
	if g := c.current().GetSpec().GetContainer().GetStopGracePeriod(); g != nil {
		grace = g.AsDuration()
	}
	if _, err := c.ctr.Stop(ctx, grace); err != nil && !errors.Is(err, runtime.ErrNotRunning) {
		return fmt.Errorf("stop container: %w", err)
	}
	return nil
}

// drain waits env.drain before a task with endpoints is signalled. The
// dispatcher withdraws a task from every VIP map, DNS answer and routing
// mesh the moment its desired state passes running, in the same batch that
// tells this agent to stop it; other nodes apply that a few milliseconds
// later. Signalled at once, the app would close its listener while clients
// elsewhere still send it new connections, and those fail. Docker Swarm
// waits 2s here for the same reason (Kubernetes users add a preStop sleep).
func (c *controller) drain(ctx context.Context) {
	t := c.current()
	if c.env.drain <= 0 || c.status.GetState() != pb.TaskState_TASK_STATE_RUNNING || (len(t.GetNetworks()) == 0 && len(c.ports) == 0) {
		return // not running, or no endpoints: nobody is sent to it
	}
	if c.env.pause != nil {
		c.env.pause(ctx, c.env.drain)
		return
	}
	timer := time.NewTimer(c.env.drain)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// cleanup deletes the task's container, rootfs, secrets and resolv.conf.
func (c *controller) cleanup(ctx context.Context) {
	c.stopMonitor()
	c.detachNetworks(c.current())
	if err := c.env.exec.Remove(ctx, c.id); err != nil {
		c.log.Warn("remove task container", "err", err)
	}
	if err := c.env.secrets.Remove(c.id); err != nil {
		c.log.Warn("remove task secrets", "err", err)
	}
	if c.env.dns != nil {
		if err := c.env.dns.Remove(c.id); err != nil {
			c.log.Warn("remove task resolv.conf", "err", err)
		}
	}
	c.ctr, c.prep, c.cleaned = nil, nil, true
}

// untilStopping is ctx, also cancelled once the task is to stop.
func (c *controller) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
