package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

// serviceFlags are the options `service create` and `service update` share.
type serviceFlags struct {
	replicas                               int64
	image, user, workdir, hostname         string
	stopSignal                             string
	limitCPU, limitMem, reserveCPU, resMem string
	limitPids                              int64
	restartCond                            string
	restartMax                             uint64
	updParallel, rbParallel                uint64
	updFailure, rbFailure                  string
	updOrder, rbOrder                      string
	updRatio, rbRatio                      float32
	healthCmd, healthHTTP                  string
	healthTCP                              uint32
	noHealth, readOnly, tty                bool
	maxPerNode                             uint64
	strategy                               string
	endpointMode                           string
	securityOpts                           []string
}

func (f *serviceFlags) register(fs *pflag.FlagSet) {
	fs.Int64Var(&f.replicas, "replicas", 1, "number of tasks of a replicated service")
	fs.StringVarP(&f.user, "user", "u", "", "user[:group] to run as")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVar(&f.hostname, "hostname", "", "container hostname")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal to stop the container (default SIGTERM)")
	fs.Duration("stop-grace-period", 0, "time to wait before killing a container (default 10s)")
	fs.StringVar(&f.limitCPU, "limit-cpu", "", "CPU limit, e.g. 0.5")
	fs.StringVar(&f.limitMem, "limit-memory", "", "memory limit, e.g. 64M")
	fs.Int64Var(&f.limitPids, "limit-pids", 0, "maximum number of processes (0: unlimited)")
	fs.StringVar(&f.reserveCPU, "reserve-cpu", "", "CPU reserved for placement, e.g. 0.25")
	fs.StringVar(&f.resMem, "reserve-memory", "", "memory reserved for placement, e.g. 32M")
	fs.StringVar(&f.restartCond, "restart-condition", "any", "restart when a task ends: any, on-failure or none")
	fs.Duration("restart-delay", 0, "delay between restarts (default 5s)")
	fs.Uint64Var(&f.restartMax, "restart-max-attempts", 0, "maximum restarts within the window (0: unlimited)")
	fs.Duration("restart-window", 0, "window in which restarts are counted")
	fs.Uint64Var(&f.updParallel, "update-parallelism", 1, "tasks updated at once (0: all)")
	fs.Duration("update-delay", 0, "delay between updates of task groups")
	fs.StringVar(&f.updFailure, "update-failure-action", "pause", "on a failed update: pause, continue or rollback")
	fs.Duration("update-monitor", 0, "time a new task must stay up to count as updated (default 5s)")
	fs.Float32Var(&f.updRatio, "update-max-failure-ratio", 0, "tolerated failure ratio during an update")
	fs.StringVar(&f.updOrder, "update-order", "stop-first", "stop-first or start-first")
	fs.Uint64Var(&f.rbParallel, "rollback-parallelism", 1, "tasks rolled back at once (0: all)")
	fs.Duration("rollback-delay", 0, "delay between rollbacks of task groups")
	fs.StringVar(&f.rbFailure, "rollback-failure-action", "pause", "on a failed rollback: pause or continue")
	fs.Duration("rollback-monitor", 0, "time a rolled-back task must stay up")
	fs.Float32Var(&f.rbRatio, "rollback-max-failure-ratio", 0, "tolerated failure ratio during a rollback")
	fs.StringVar(&f.rbOrder, "rollback-order", "stop-first", "stop-first or start-first")
	fs.StringVar(&f.healthCmd, "health-cmd", "", "command to check health (run with sh -c)")
	fs.Duration("health-interval", 0, "time between health checks")
	fs.Duration("health-timeout", 0, "maximum time one check may take")
	fs.Uint("health-retries", 0, "failures in a row before unhealthy")
	fs.Duration("health-start-period", 0, "start period during which failures do not count")
	fs.Duration("health-start-interval", 0, "time between health checks during the start period")
	fs.StringVar(&f.healthHTTP, "health-http", "", "check health with GET http://127.0.0.1:PORT/PATH from the agent (PORT/PATH; 2xx or 3xx is healthy)")
	fs.Uint32Var(&f.healthTCP, "health-tcp", 0, "check health by connecting to 127.0.0.1:PORT in the container, from the agent")
	fs.BoolVar(&f.noHealth, "no-healthcheck", false, "disable the image's health check")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fs.BoolVarP(&f.tty, "tty", "t", false, "allocate a TTY")
	fs.Uint64Var(&f.maxPerNode, "replicas-max-per-node", 0, "maximum tasks per node (0: unlimited)")
	fs.StringVar(&f.strategy, "placement-strategy", "spread", "spread (fewest tasks first) or binpack (fullest node that fits)")
	fs.StringVar(&f.endpointMode, "endpoint-mode", "vip", "vip or dnsrr")
	fs.StringArrayVar(&f.securityOpts, "security-opt", nil,
		"seccomp=unconfined|builtin|FILE: the containers' syscall filter (default: Docker's profile); repeatable, an update replaces the list")
	registerLogOpts(fs)
}

// apply writes every flag the user set onto spec (all of them when all is
// true, as for create), so update changes only what was asked.
func (f *serviceFlags) apply(fs *pflag.FlagSet, s *pb.ServiceSpec, all bool) error {
	set := func(name string) bool { return all || fs.Changed(name) }
	c := ensureContainer(s)
	t := s.Task
	if fs.Changed("replicas") || (all && s.Mode == pb.ServiceMode_SERVICE_MODE_REPLICATED) {
		s.Replicas = proto.Int64(f.replicas)
	}
	if fs.Changed("user") {
		c.User = f.user
	}
	if fs.Changed("workdir") {
		c.Workdir = f.workdir
	}
	if fs.Changed("hostname") {
		c.Hostname = f.hostname
	}
	if fs.Changed("stop-signal") {
		c.StopSignal = f.stopSignal
	}
	if fs.Changed("read-only") {
		c.ReadOnly = f.readOnly
	}
	if fs.Changed("tty") {
		c.Tty = f.tty
	}
	if fs.Changed("security-opt") {
		opts, err := flagparse.SecurityOpts(f.securityOpts)
		if err != nil {
			return err
		}
		c.SecurityOpts = opts
	}
	durationFlag(fs, "stop-grace-period", &c.StopGracePeriod)
	if err := applyLogOpts(fs, c); err != nil {
		return err
	}
	if err := f.applyResources(fs, t); err != nil {
		return err
	}
	if err := f.applyRestart(fs, t, set); err != nil {
		return err
	}
	if fs.Changed("replicas-max-per-node") {
		ensurePlacement(t).MaxReplicasPerNode = f.maxPerNode
	}
	var err error
	if set("placement-strategy") && f.strategy != "" {
		if ensurePlacement(t).Strategy, err = enumFlag[pb.Placement_Strategy]("placement-strategy", f.strategy, "STRATEGY_", pb.Placement_Strategy_value); err != nil {
			return err
		}
	}
	if s.Update, err = f.applyUpdate(fs, "update", s.Update, f.updParallel, f.updFailure, f.updOrder, f.updRatio, set); err != nil {
		return err
	}
	if s.Rollback, err = f.applyUpdate(fs, "rollback", s.Rollback, f.rbParallel, f.rbFailure, f.rbOrder, f.rbRatio, set); err != nil {
		return err
	}
	if err := f.applyHealth(fs, c); err != nil {
		return err
	}
	if set("endpoint-mode") {
		if s.Endpoint == nil {
			s.Endpoint = &pb.EndpointSpec{}
		}
		if s.Endpoint.Mode, err = enumFlag[pb.EndpointSpec_Mode]("endpoint-mode", f.endpointMode, "MODE_", pb.EndpointSpec_Mode_value); err != nil {
			return err
		}
	}
	return nil
}

func (f *serviceFlags) applyResources(fs *pflag.FlagSet, t *pb.TaskSpec) error {
	if t.Resources == nil {
		t.Resources = &pb.Resources{}
	}
	r := t.Resources
	if r.Limits == nil {
		r.Limits = &pb.ResourceSet{}
	}
	if r.Reservations == nil {
		r.Reservations = &pb.ResourceSet{}
	}
	var err error
	for _, x := range []struct {
		flag, val string
		dst       *int64
		parse     func(string, string) (int64, error)
	}{
		{"limit-cpu", f.limitCPU, &r.Limits.NanoCpus, flagparse.CPUs},
		{"limit-memory", f.limitMem, &r.Limits.MemoryBytes, flagparse.Bytes},
		{"reserve-cpu", f.reserveCPU, &r.Reservations.NanoCpus, flagparse.CPUs},
		{"reserve-memory", f.resMem, &r.Reservations.MemoryBytes, flagparse.Bytes},
	} {
		if fs.Changed(x.flag) {
			if *x.dst, err = x.parse(x.flag, x.val); err != nil {
				return err
			}
		}
	}
	if fs.Changed("limit-pids") {
		r.Limits.Pids = f.limitPids
	}
	return nil
}

func (f *serviceFlags) applyRestart(fs *pflag.FlagSet, t *pb.TaskSpec, set func(string) bool) error {
	if t.Restart == nil {
		t.Restart = &pb.RestartPolicy{}
	}
	if set("restart-condition") {
		cond, err := enumFlag[pb.RestartPolicy_Condition]("restart-condition", f.restartCond, "CONDITION_", pb.RestartPolicy_Condition_value)
		if err != nil {
			return err
		}
		t.Restart.Condition = cond
	}
	if fs.Changed("restart-max-attempts") {
		t.Restart.MaxAttempts = f.restartMax
	}
	durationFlag(fs, "restart-delay", &t.Restart.Delay)
	durationFlag(fs, "restart-window", &t.Restart.Window)
	return nil
}

func (f *serviceFlags) applyUpdate(fs *pflag.FlagSet, prefix string, u *pb.UpdateConfig, par uint64, failure, order string, ratio float32, set func(string) bool) (*pb.UpdateConfig, error) {
	if u == nil {
		u = &pb.UpdateConfig{}
	}
	if set(prefix + "-parallelism") {
		u.Parallelism = par
	}
	if set(prefix + "-failure-action") {
		a, err := enumFlag[pb.UpdateConfig_FailureAction](prefix+"-failure-action", failure, "FAILURE_ACTION_", pb.UpdateConfig_FailureAction_value)
		if err != nil {
			return nil, err
		}
		u.FailureAction = a
	}
	if set(prefix + "-order") {
		o, err := enumFlag[pb.UpdateConfig_Order](prefix+"-order", order, "ORDER_", pb.UpdateConfig_Order_value)
		if err != nil {
			return nil, err
		}
		u.Order = o
	}
	if fs.Changed(prefix + "-max-failure-ratio") {
		u.MaxFailureRatio = ratio
	}
	durationFlag(fs, prefix+"-delay", &u.Delay)
	durationFlag(fs, prefix+"-monitor", &u.Monitor)
	return u, nil
}

func (f *serviceFlags) applyHealth(fs *pflag.FlagSet, c *pb.ContainerSpec) error {
	if f.noHealth {
		c.Healthcheck = &pb.HealthCheck{Test: []string{"NONE"}}
		return nil
	}
	h := c.Healthcheck
	if h == nil {
		h = &pb.HealthCheck{}
	}
	// One kind of check: a new one replaces the others.
	switch {
	case fs.Changed("health-cmd"):
		h.Test, h.HttpPort, h.HttpPath, h.TcpPort = []string{"CMD-SHELL", f.healthCmd}, 0, "", 0
	case fs.Changed("health-http"):
		port, path, err := httpProbeFlag(f.healthHTTP)
		if err != nil {
			return err
		}
		h.Test, h.HttpPort, h.HttpPath, h.TcpPort = nil, port, path, 0
	case fs.Changed("health-tcp"):
		h.Test, h.HttpPort, h.HttpPath, h.TcpPort = nil, 0, "", f.healthTCP
	}
	if fs.Changed("health-retries") {
		n, _ := fs.GetUint("health-retries")
		h.Retries = uint32(n)
	}
	durationFlag(fs, "health-interval", &h.Interval)
	durationFlag(fs, "health-timeout", &h.Timeout)
	durationFlag(fs, "health-start-period", &h.StartPeriod)
	durationFlag(fs, "health-start-interval", &h.StartInterval)
	if len(h.Test) > 0 || h.HttpPort != 0 || h.TcpPort != 0 || h.Interval != nil || h.Timeout != nil || h.Retries != 0 {
		c.Healthcheck = h
	}
	return nil
}

// httpProbeFlag reads --health-http PORT[/PATH].
func httpProbeFlag(v string) (uint32, string, error) {
	p, path, _ := strings.Cut(v, "/")
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return 0, "", fmt.Errorf("--health-http %q: want PORT/PATH, e.g. 8080/health", v)
	}
	return uint32(port), "/" + path, nil
}

func ensureContainer(s *pb.ServiceSpec) *pb.ContainerSpec {
	if s.Task == nil {
		s.Task = &pb.TaskSpec{}
	}
	if s.Task.Container == nil {
		s.Task.Container = &pb.ContainerSpec{}
	}
	return s.Task.Container
}

func ensurePlacement(t *pb.TaskSpec) *pb.Placement {
	if t.Placement == nil {
		t.Placement = &pb.Placement{}
	}
	return t.Placement
}

// editList adds and removes entries of a list; rm matches whole entries or,
// with key, entries whose key (before '=') matches.
func editList(list, add, rm []string, byKey bool) []string {
	drop := map[string]bool{}
	for _, r := range rm {
		drop[r] = true
	}
	for _, a := range add {
		if byKey {
			k, _, _ := strings.Cut(a, "=")
			drop[k] = true
		} else {
			drop[a] = true
		}
	}
	var out []string
	for _, e := range list {
		k := e
		if byKey {
			k, _, _ = strings.Cut(e, "=")
		}
		if !drop[k] {
			out = append(out, e)
		}
	}
	return append(out, add...)
}

func editMap(m map[string]string, add, rm []string, flag string) (map[string]string, error) {
	adds, err := flagparse.Labels(flag+"-add", add)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]string{}
	}
	for _, k := range rm {
		k, _, _ = strings.Cut(k, "=")
		delete(m, k)
	}
	for k, v := range adds {
		m[k] = v
	}
	return m, nil
}

// modeFlag reads --mode.
func modeFlag(v string) (pb.ServiceMode, error) {
	switch v {
	case "replicated", "":
		return pb.ServiceMode_SERVICE_MODE_REPLICATED, nil
	case "global":
		return pb.ServiceMode_SERVICE_MODE_GLOBAL, nil
	}
	return 0, fmt.Errorf("--mode %q: use replicated or global", v)
}
