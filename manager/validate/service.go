package validate

import (
	"fmt"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
	"berth/scheduler"
)

// MaxReplicas bounds a replicated service, so a typo cannot flood the cluster.
const MaxReplicas = 100000

// validName reports whether n is 1-63 letters, digits, '_', '.' or '-',
// starting with a letter or digit. (Checked by hand: the regexp it
// replaces, compiled at package init, cost every process that links the
// manager — berth-agent run included — a fifth of a millisecond.)
func validName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// Name checks an object name (service, network, secret, node).
func Name(field, n string) error {
	if n == "" {
		return fieldErr(field, "name is empty", "give a name such as web")
	}
	if !validName(n) {
		return fieldErr(field, fmt.Sprintf("name %s is not valid", quote(n)), "use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit")
	}
	return nil
}

// ServiceSpec checks a service spec on its own. It takes any spec a
// client can send, nil or with nil parts, and refuses what is missing.
func ServiceSpec(s *pb.ServiceSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send a service spec")
	}
	if err := serviceLimits(s); err != nil {
		return err
	}
	if err := Name("name", s.GetAnnotations().GetName()); err != nil {
		return err
	}
	if err := mode(s); err != nil {
		return err
	}
	if s.GetTask() == nil {
		return fieldErr("task", "missing", "give what each task runs, at least task.container.image")
	}
	if err := TaskSpec(s.GetTask()); err != nil {
		return err
	}
	if err := updateConfig("update_config", s.GetUpdate()); err != nil {
		return err
	}
	if err := updateConfig("rollback_config", s.GetRollback()); err != nil {
		return err
	}
	if err := endpoint(s.GetEndpoint()); err != nil {
		return err
	}
	return networkAttachments(s.GetNetworks())
}

// networkAttachments checks the networks a service or a standalone
// container joins: each named once, aliases DNS names.
func networkAttachments(nets []*pb.NetworkAttachment) error {
	seen := map[string]bool{}
	for i, n := range nets {
		if n.GetTarget() == "" {
			return fieldErr(fmt.Sprintf("networks[%d]", i), "network is empty", "name a network created with `berth network create`")
		}
		if seen[n.GetTarget()] {
			return fieldErr(fmt.Sprintf("networks[%d]", i), fmt.Sprintf("network %s is listed twice", quote(n.GetTarget())), "list each network once")
		}
		seen[n.GetTarget()] = true
		for _, alias := range n.GetAliases() {
			if !isDNSName(alias) {
				return fieldErr(fmt.Sprintf("networks[%d].aliases", i), fmt.Sprintf("alias %q is not a DNS name", alias), "use letters, digits, '-' and '.', up to 253 characters")
			}
		}
	}
	return nil
}

// isDNSName reports whether s is a host name: dot-separated labels of
// letters, digits and '-', none empty, none longer than 63 characters.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

func mode(s *pb.ServiceSpec) error {
	switch s.GetMode() {
	case pb.ServiceMode_SERVICE_MODE_REPLICATED:
		if r := s.GetReplicas(); r < 0 || r > MaxReplicas {
			return fieldErr("replicas", fmt.Sprintf("%d is out of range", r), "use 0 to %d", MaxReplicas)
		}
	case pb.ServiceMode_SERVICE_MODE_GLOBAL:
		if s.Replicas != nil {
			return fieldErr("replicas", "a global service runs one task per eligible node", "drop --replicas, or use --mode replicated")
		}
	default:
		return fieldErr("mode", fmt.Sprintf("unknown mode %d", s.GetMode()), "use replicated or global")
	}
	return nil
}

// TaskSpec checks what each task runs.
func TaskSpec(t *pb.TaskSpec) error {
	if err := taskLimits(t); err != nil {
		return err
	}
	c := t.GetContainer()
	if c == nil {
		return fieldErr("container", "missing", "give the container to run, at least its image")
	}
	if c.GetImage() == "" {
		return fieldErr("image", "image is empty", "give an image reference such as busybox:latest")
	}
	ref, err := name.ParseReference(c.GetImage())
	if err != nil {
		return fieldErr("image", fmt.Sprintf("%s is not an image reference (%v)", quote(c.GetImage()), err), "use NAME[:TAG] or NAME@sha256:DIGEST")
	}
	if err := registryAuth(c.GetImage(), ref, c.GetRegistryAuth()); err != nil {
		return err
	}
	for i, e := range c.GetEnv() {
		if k, _, _ := strings.Cut(e, "="); k == "" || strings.ContainsAny(k, " \t\n") {
			return fieldErr(fmt.Sprintf("env[%d]", i), fmt.Sprintf("%s has no variable name", quote(e)), "use KEY=VALUE")
		}
	}
	if w := c.GetWorkdir(); w != "" && !path.IsAbs(w) {
		return fieldErr("workdir", fmt.Sprintf("%s is not absolute", quote(w)), "use a path starting with /")
	}
	if sig := c.GetStopSignal(); sig != "" && !knownSignal(sig) {
		return fieldErr("stop_signal", fmt.Sprintf("unknown signal %s", quote(sig)), "use a name such as SIGTERM or SIGINT")
	}
	if err := duration("stop_grace_period", c.GetStopGracePeriod()); err != nil {
		return err
	}
	if err := mounts(c.GetMounts()); err != nil {
		return err
	}
	if err := securityOpts(c.GetSecurityOpts()); err != nil {
		return err
	}
	if err := logConfig(c.GetLog()); err != nil {
		return err
	}
	if err := health(c.GetHealthcheck()); err != nil {
		return err
	}
	if err := containerFiles(c); err != nil {
		return err
	}
	if err := resources(t.GetResources()); err != nil {
		return err
	}
	if err := restart(t.GetRestart()); err != nil {
		return err
	}
	return placement(t.GetPlacement())
}

func mounts(ms []*pb.Mount) error {
	targets := map[string]bool{}
	for i, m := range ms {
		f := fmt.Sprintf("mounts[%d]", i)
		if !path.IsAbs(m.GetTarget()) {
			return fieldErr(f+".target", fmt.Sprintf("%s is not an absolute path", quote(m.GetTarget())), "use a path inside the container starting with /")
		}
		if targets[path.Clean(m.GetTarget())] {
			return fieldErr(f+".target", fmt.Sprintf("%s is mounted twice", quote(m.GetTarget())), "mount each target once")
		}
		targets[path.Clean(m.GetTarget())] = true
		switch m.GetType() {
		case pb.Mount_TYPE_BIND:
			if !path.IsAbs(m.GetSource()) {
				return fieldErr(f+".source", fmt.Sprintf("bind source %s is not an absolute host path", quote(m.GetSource())), "use type=volume for a named volume")
			}
		case pb.Mount_TYPE_VOLUME:
			if err := Name(f+".source", m.GetSource()); err != nil {
				return err
			}
		case pb.Mount_TYPE_TMPFS:
			if m.GetSource() != "" {
				return fieldErr(f+".source", "a tmpfs mount has no source", "drop source")
			}
			if m.GetTmpfsSizeBytes() < 0 {
				return fieldErr(f+".tmpfs_size", "negative size", "use a positive size such as 64M")
			}
		}
	}
	return nil
}

func health(h *pb.HealthCheck) error {
	if h == nil {
		return nil
	}
	if len(h.GetTest()) > 0 {
		switch h.GetTest()[0] {
		case "NONE":
		case "CMD", "CMD-SHELL":
			if len(h.GetTest()) < 2 {
				return fieldErr("healthcheck.test", "no command", "give a command after %s", h.GetTest()[0])
			}
		default:
			return fieldErr("healthcheck.test", fmt.Sprintf("%s must start with CMD, CMD-SHELL or NONE", quote(h.GetTest()[0])), "e.g. CMD-SHELL \"wget -q -O- localhost/health\"")
		}
	}
	for _, d := range []struct {
		f string
		d *durationpb.Duration
	}{{"healthcheck.interval", h.GetInterval()}, {"healthcheck.timeout", h.GetTimeout()}, {"healthcheck.start_period", h.GetStartPeriod()},
		{"healthcheck.start_interval", h.GetStartInterval()}} {
		if err := duration(d.f, d.d); err != nil {
			return err
		}
	}
	return healthProbes(h)
}

// healthProbes checks the probes the agent runs from outside: one kind of
// check at most, on a real port, with an absolute path.
func healthProbes(h *pb.HealthCheck) error {
	kinds := 0
	if len(h.GetTest()) > 0 && h.GetTest()[0] != "NONE" {
		kinds++
	}
	for _, p := range []struct {
		f    string
		port uint32
	}{{"healthcheck.http_port", h.GetHttpPort()}, {"healthcheck.tcp_port", h.GetTcpPort()}} {
		if p.port == 0 {
			continue
		}
		kinds++
		if p.port > 65535 {
			return fieldErr(p.f, fmt.Sprintf("%d is not a port", p.port), "use 1-65535")
		}
	}
	if kinds > 1 {
		return fieldErr("healthcheck", "more than one check (command, HTTP, TCP)", "give one of --health-cmd, --health-http and --health-tcp")
	}
	if h.GetHttpPath() != "" && h.GetHttpPort() == 0 {
		return fieldErr("healthcheck.http_path", "a path without a port", "use --health-http PORT/PATH")
	}
	if p := h.GetHttpPath(); p != "" && !strings.HasPrefix(p, "/") {
		return fieldErr("healthcheck.http_path", fmt.Sprintf("%q is not an absolute path", p), "start it with /, e.g. 8080/health")
	}
	return nil
}

func resources(r *pb.Resources) error {
	for _, set := range []struct {
		f string
		s *pb.ResourceSet
	}{{"limits", r.GetLimits()}, {"reservations", r.GetReservations()}} {
		if set.s.GetNanoCpus() < 0 || set.s.GetMemoryBytes() < 0 || set.s.GetPids() < 0 {
			return fieldErr("resources."+set.f, "negative amount", "use 0 for none or a positive amount")
		}
	}
	l, res := r.GetLimits(), r.GetReservations()
	if l.GetMemoryBytes() > 0 && res.GetMemoryBytes() > l.GetMemoryBytes() {
		return fieldErr("resources.reservations.memory", "reservation exceeds the limit", "reserve at most the memory limit")
	}
	if l.GetNanoCpus() > 0 && res.GetNanoCpus() > l.GetNanoCpus() {
		return fieldErr("resources.reservations.cpus", "reservation exceeds the limit", "reserve at most the CPU limit")
	}
	if m := l.GetMemoryBytes(); m > 0 && m < 6<<20 {
		return fieldErr("resources.limits.memory", fmt.Sprintf("%d bytes is too small to start a container", m), "use at least 6M")
	}
	return nil
}

func restart(r *pb.RestartPolicy) error {
	if err := duration("restart_policy.delay", r.GetDelay()); err != nil {
		return err
	}
	return duration("restart_policy.window", r.GetWindow())
}

func placement(p *pb.Placement) error {
	if _, err := scheduler.ParseConstraints(p.GetConstraints()); err != nil {
		return fieldErr("placement.constraints", err.Error(), "see `berth service create --help`")
	}
	for i, pref := range p.GetPreferences() {
		if d := pref.GetSpreadDescriptor(); !strings.HasPrefix(d, "node.labels.") && d != "node.id" && d != "node.hostname" {
			return fieldErr(fmt.Sprintf("placement.preferences[%d]", i), fmt.Sprintf("cannot spread over %s", quote(d)), "use spread=node.labels.NAME")
		}
	}
	return nil
}

func updateConfig(field string, u *pb.UpdateConfig) error {
	if u == nil {
		return nil
	}
	if err := duration(field+".delay", u.GetDelay()); err != nil {
		return err
	}
	if err := duration(field+".monitor", u.GetMonitor()); err != nil {
		return err
	}
	if _, ok := pb.UpdateConfig_FailureAction_name[int32(u.GetFailureAction())]; !ok {
		return fieldErr(field+".failure_action", fmt.Sprintf("%d is not a failure action", u.GetFailureAction()), "use pause, continue or rollback")
	}
	if field == "rollback_config" && u.GetFailureAction() == pb.UpdateConfig_FAILURE_ACTION_ROLLBACK {
		return fieldErr(field+".failure_action", "a rollback cannot roll back", "use pause or continue")
	}
	if _, ok := pb.UpdateConfig_Order_name[int32(u.GetOrder())]; !ok {
		return fieldErr(field+".order", fmt.Sprintf("%d is not an update order", u.GetOrder()), "use stop-first or start-first")
	}
	if r := u.GetMaxFailureRatio(); r < 0 || r > 1 {
		return fieldErr(field+".max_failure_ratio", fmt.Sprintf("%g is not a ratio", r), "use a value from 0 to 1")
	}
	return nil
}

func endpoint(e *pb.EndpointSpec) error {
	type key struct {
		port  uint32
		proto pb.PortConfig_Protocol
	}
	seen := map[key]bool{}
	for i, p := range e.GetPorts() {
		f := fmt.Sprintf("ports[%d]", i)
		if p.GetTargetPort() == 0 || p.GetTargetPort() > 65535 {
			return fieldErr(f+".target", fmt.Sprintf("%d is not a port", p.GetTargetPort()), "use 1-65535")
		}
		if p.GetPublishedPort() > 65535 {
			return fieldErr(f+".published", fmt.Sprintf("%d is not a port", p.GetPublishedPort()), "use 1-65535, or 0 to pick one")
		}
		if p.GetPublishedPort() != 0 {
			k := key{p.GetPublishedPort(), p.GetProtocol()}
			if seen[k] {
				return fieldErr(f+".published", fmt.Sprintf("port %d is published twice", p.GetPublishedPort()), "publish each port once")
			}
			seen[k] = true
		}
		if e.GetMode() == pb.EndpointSpec_MODE_DNSRR && p.GetPublishMode() == pb.PortConfig_PUBLISH_MODE_INGRESS {
			return fieldErr(f+".mode", "ingress ports need a virtual IP", "use --endpoint-mode vip, or publish with mode=host")
		}
	}
	return nil
}

func duration(field string, d *durationpb.Duration) error {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return fieldErr(field, err.Error(), "use a duration such as 10s")
	}
	if d.AsDuration() < 0 {
		return fieldErr(field, fmt.Sprintf("%s is negative", d.AsDuration()), "use a duration of 0 or more, such as 10s")
	}
	return nil
}

var signals = map[string]bool{"HUP": true, "INT": true, "QUIT": true, "KILL": true, "USR1": true, "USR2": true, "TERM": true, "STOP": true, "WINCH": true, "PWR": true}

func knownSignal(s string) bool {
	return signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
}
