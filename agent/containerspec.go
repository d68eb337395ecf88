package agent

import (
	"fmt"
	"maps"
	"strings"

	"golang.org/x/sys/unix"

	"berth/agent/image"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
	"berth/seccomp"
)

// RuntimeSpec turns a container spec and its image's config into what the
// runtime runs, with Docker's rules: a spec command replaces the image's
// entrypoint and drops its cmd; spec args replace the image's cmd; spec env
// overrides image env by name. Security options choose the seccomp profile
// (Docker's default unless they say seccomp=unconfined or give one).
func RuntimeSpec(id, rootfs string, img image.RunConfig, c *pb.ContainerSpec, limits *pb.ResourceSet) (runtime.Spec, error) {
	entry, args := img.Entrypoint, img.Cmd
	if len(c.GetCommand()) > 0 {
		entry, args = c.GetCommand(), nil
	}
	if len(c.GetArgs()) > 0 {
		args = c.GetArgs()
	}
	argv := append(append([]string{}, entry...), args...)
	if len(argv) == 0 {
		return runtime.Spec{}, fmt.Errorf("image has no entrypoint or cmd and the spec gives no command: give one after the image")
	}
	s := runtime.Spec{
		ID:             id,
		Rootfs:         rootfs,
		ReadonlyRootfs: c.GetReadOnly(),
		Args:           argv,
		Env:            mergeEnv(img.Env, c.GetEnv()),
		Cwd:            first(c.GetWorkdir(), img.WorkingDir),
		User:           first(c.GetUser(), img.User),
		Hostname:       first(c.GetHostname(), shortHostname(id)),
		Labels:         mergeLabels(img.Labels, c.GetLabels()),
		TTY:            c.GetTty(),
		LogMaxBytes:    c.GetLog().GetMaxSizeBytes(),
		LogMaxFiles:    int(c.GetLog().GetMaxFiles()),
		Resources: runtime.Resources{
			MemoryBytes: limits.GetMemoryBytes(),
			NanoCPUs:    limits.GetNanoCpus(),
			PidsLimit:   limits.GetPids(),
		},
	}
	profile, err := seccomp.SecurityOpts(c.GetSecurityOpts())
	if err != nil {
		return runtime.Spec{}, err
	}
	s.Seccomp = profile
	if g := c.GetStopGracePeriod(); g != nil {
		s.StopGrace = g.AsDuration()
	}
	if name := first(c.GetStopSignal(), img.StopSignal); name != "" {
		sig, err := ParseSignal(name)
		if err != nil {
			return runtime.Spec{}, err
		}
		s.StopSignal = sig
	}
	for _, m := range c.GetMounts() {
		rm := runtime.Mount{Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly()}
		switch m.GetType() {
		case pb.Mount_TYPE_BIND:
			rm.Type = runtime.MountBind
		case pb.Mount_TYPE_VOLUME:
			rm.Type = runtime.MountVolume
		case pb.Mount_TYPE_TMPFS:
			rm.Type = runtime.MountTmpfs
			if sz := m.GetTmpfsSizeBytes(); sz > 0 {
				rm.Options = []string{fmt.Sprintf("size=%d", sz)}
			}
		}
		s.Mounts = append(s.Mounts, rm)
	}
	return s, s.Validate()
}

// Labels berth puts on every task's container, as Swarm puts its
// com.docker.swarm.* ones: `berth-agent ps --filter label=...` finds a
// service's containers on a node.
const (
	LabelServiceID = "berth.service.id"
	LabelTaskID    = "berth.task.id"
	LabelTaskSlot  = "berth.task.slot" // 0 for a global service's task
	LabelNodeID    = "berth.node.id"
)

// withTaskLabels adds the task's own labels to a container's, over any
// the user or image gave the same keys, as Swarm does.
func withTaskLabels(labels map[string]string, t *pb.Task) map[string]string {
	return mergeLabels(labels, map[string]string{
		LabelServiceID: t.GetServiceId(),
		LabelTaskID:    t.GetId(),
		LabelTaskSlot:  fmt.Sprint(t.GetSlot()),
		LabelNodeID:    t.GetNodeId(),
	})
}

// mergeLabels returns base's labels with over's on top, nil when both
// are empty (the image's labels are a container's too, as in Docker).
func mergeLabels(base, over map[string]string) map[string]string {
	if len(base)+len(over) == 0 {
		return nil
	}
	out := make(map[string]string, len(base)+len(over))
	maps.Copy(out, base)
	maps.Copy(out, over)
	return out
}

// ParseSignal reads a signal name ("SIGTERM", "term") or number ("15").
func ParseSignal(name string) (unix.Signal, error) {
	var n int
	if _, err := fmt.Sscanf(name, "%d", &n); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(name), "SIG"))
	if sig == 0 {
		return 0, fmt.Errorf("stop signal %q: unknown signal; use a name such as SIGTERM", name)
	}
	return sig, nil
}

// mergeEnv overlays KEY=VALUE entries onto base, keeping base's order.
func mergeEnv(base, over []string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base)+len(over))
	for _, e := range append(append([]string{}, base...), over...) {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func shortHostname(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
