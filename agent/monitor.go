package agent

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/agent/image"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// Docker's health check defaults.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// healthCheck is a container spec's health check with defaults applied.
type healthCheck struct {
	args          []string // a command run in the container, or
	httpPort      uint32   // an HTTP GET of httpPath, or
	httpPath      string
	tcpPort       uint32 // a TCP connect, from the agent
	interval      time.Duration
	timeout       time.Duration
	retries       int
	startPeriod   time.Duration
	startInterval time.Duration
}

// healthConfig reads a spec's health check; nil when there is none
// (no test, or ["NONE"], and no HTTP or TCP probe).
func healthConfig(h *pb.HealthCheck) *healthCheck {
	test := h.GetTest()
	hc := &healthCheck{
		interval: defaultHealthInterval, timeout: defaultHealthTimeout,
		retries:  defaultHealthRetries,
		httpPort: h.GetHttpPort(), httpPath: h.GetHttpPath(), tcpPort: h.GetTcpPort(),
	}
	switch {
	case hc.httpPort != 0 || hc.tcpPort != 0:
		if hc.httpPath == "" {
			hc.httpPath = "/"
		}
	case len(test) == 0 || test[0] == "NONE":
		return nil
	case test[0] == "CMD":
		hc.args = test[1:]
	case test[0] == "CMD-SHELL":
		hc.args = []string{"/bin/sh", "-c", joinArgs(test[1:])}
	default: // a bare command, as an API client may send
		hc.args = test
	}
	if len(hc.args) == 0 && hc.httpPort == 0 && hc.tcpPort == 0 {
		return nil
	}
	hc.startInterval = h.GetStartInterval().AsDuration()
	if d := h.GetInterval().AsDuration(); d > 0 {
		hc.interval = d
	}
	if d := h.GetTimeout().AsDuration(); d > 0 {
		hc.timeout = d
	}
	if h.GetRetries() > 0 {
		hc.retries = int(h.GetRetries())
	}
	hc.startPeriod = h.GetStartPeriod().AsDuration()
	return hc
}

// withImageHealth is the check a container runs, by Docker's rules: the
// image's HEALTHCHECK unless the spec gives a check of its own (or NONE),
// with the spec's timings, where set, over the image's.
func withImageHealth(h *pb.HealthCheck, img *image.HealthConfig) *pb.HealthCheck {
	if img == nil || len(img.Test) == 0 || len(h.GetTest()) > 0 || h.GetHttpPort() != 0 || h.GetTcpPort() != 0 {
		return h
	}
	out := &pb.HealthCheck{Test: img.Test, Retries: uint32(max(img.Retries, 0))}
	for _, d := range []struct {
		dst  **durationpb.Duration
		spec *durationpb.Duration
		img  time.Duration
	}{{&out.Interval, h.GetInterval(), img.Interval}, {&out.Timeout, h.GetTimeout(), img.Timeout},
		{&out.StartPeriod, h.GetStartPeriod(), img.StartPeriod}} {
		switch {
		case d.spec != nil:
			*d.dst = d.spec
		case d.img > 0:
			*d.dst = durationpb.New(d.img)
		}
	}
	out.StartInterval = h.GetStartInterval()
	if h.GetRetries() > 0 {
		out.Retries = h.GetRetries()
	}
	return out
}

func joinArgs(a []string) string {
	var b bytes.Buffer
	for i, s := range a {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

// monitor watches a running container for its exit and, with a health
// check, its health. Its goroutines end on stop.
type monitor struct {
	exit   chan runtime.ExitStatus        // receives once, when the container exits
	health chan pb.ContainerStatus_Health // latest health change (cap 1)
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	output string // the last failed probe's output; empty after a success
}

func (m *monitor) setOutput(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.output = s
}

// lastOutput is the last failed probe's output, if the last probe failed.
func (m *monitor) lastOutput() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.output
}

func startMonitor(ctx context.Context, ctr Container, hc *healthCheck, initial pb.ContainerStatus_Health, now func() time.Time, log *slog.Logger) *monitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{exit: make(chan runtime.ExitStatus, 1), health: make(chan pb.ContainerStatus_Health, 1), cancel: cancel}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if ex, err := ctr.Wait(ctx); err == nil {
			m.exit <- ex
		}
	}()
	if hc != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			hc.run(ctx, ctr, initial, now, log, m)
		}()
	}
	return m
}

// setHealth hands on the latest health, replacing one not yet taken.
func (m *monitor) setHealth(h pb.ContainerStatus_Health) {
	for {
		select {
		case m.health <- h:
			return
		default:
		}
		select {
		case <-m.health:
		default:
		}
	}
}

func (m *monitor) stop() {
	m.cancel()
	m.wg.Wait()
}

// run probes the container every interval, as Docker does: a success makes
// it healthy; retries failures in a row make it unhealthy; failures within
// the start period do not count until a probe has succeeded once.
func (hc *healthCheck) run(ctx context.Context, ctr Container, state pb.ContainerStatus_Health, now func() time.Time, log *slog.Logger, m *monitor) {
	start := now()
	started := state == pb.ContainerStatus_HEALTH_HEALTHY
	failures := 0
	// Docker's start interval: probe more often during the start period,
	// until the first success.
	every := func() time.Duration {
		if !started && hc.startInterval > 0 && now().Sub(start) < hc.startPeriod {
			return hc.startInterval
		}
		return hc.interval
	}
	t := time.NewTimer(every())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, out := hc.probe(ctx, ctr)
		if ctx.Err() != nil {
			return
		}
		next := state
		if ok {
			m.setOutput("")
		} else {
			m.setOutput(out)
		}
		switch {
		case ok:
			failures, started, next = 0, true, pb.ContainerStatus_HEALTH_HEALTHY
		case !started && now().Sub(start) < hc.startPeriod:
		default:
			failures++
			log.Debug("health probe failed", "failures", failures, "output", out)
			if failures >= hc.retries {
				next = pb.ContainerStatus_HEALTH_UNHEALTHY
			}
		}
		if next != state {
			state = next
			m.setHealth(state)
		}
		t.Reset(every())
	}
}

// probe runs the check once within the timeout.
func (hc *healthCheck) probe(ctx context.Context, ctr Container) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, hc.timeout)
	defer cancel()
	switch {
	case hc.httpPort != 0:
		return probeHTTP(ctx, netnsPath(ctr), hc.httpPort, hc.httpPath)
	case hc.tcpPort != 0:
		return probeTCP(ctx, netnsPath(ctr), hc.tcpPort)
	}
	out := &tailBuffer{max: 512}
	code, err := ctr.Exec(ctx, runtime.ExecSpec{Args: hc.args, Stdout: out, Stderr: out})
	if err != nil {
		return false, err.Error()
	}
	return code == 0, out.String()
}

// tailBuffer keeps the last max bytes written to it, safe for concurrent writers.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// adopt starts from the status the managers last recorded and the
// container already on the node, if any: a restarted agent keeps a
// running container and reports it again instead of starting another.
func (c *controller) adopt(ctx context.Context) {
	st, _ := proto.Clone(c.current().GetStatus()).(*pb.TaskStatus)
	if st == nil {
		st = &pb.TaskStatus{}
	}
	if st.State < pb.TaskState_TASK_STATE_ASSIGNED {
		st.State = pb.TaskState_TASK_STATE_ASSIGNED
	}
	c.status = st
	ctr, ok := c.env.exec.Container(c.id)
	if !ok {
		if st.State == pb.TaskState_TASK_STATE_RUNNING {
			s := c.newStatus(pb.TaskState_TASK_STATE_FAILED, "failed")
			s.Err = "container no longer exists on this node (lost while the agent was down)"
			c.setStatus(s)
		}
		return
	}
	started := st.GetContainer().GetStartedAt()
	if started == nil {
		started = timestamppb.New(c.env.now())
	}
	if terminal(st.State) {
		c.ctr, c.started = ctr, started
		if err := c.stop(ctx); err != nil {
			c.log.Warn("stop container of a finished task", "err", err)
		}
		return
	}
	if ex, done := ctr.Exited(); done {
		c.ctr, c.started = ctr, started
		c.setStatus(c.exited(ex))
		return
	}
	if h := st.GetContainer().GetHealth(); h != pb.ContainerStatus_HEALTH_NONE {
		c.health = h
	}
	c.attach(ctx, ctr, started)
	c.log.Info("adopted running container", "pid", ctr.Pid())
	c.setStatus(c.newStatus(pb.TaskState_TASK_STATE_RUNNING, "started"))
}
