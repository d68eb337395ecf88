package runtime

import (
	"berth/agent/runtime/initconf"
)

// initConfig is what the init of a container with spec s is told: the
// spec with the host's side already resolved (volume paths, rlimit
// numbers, capability numbers, the seccomp program) and defaults filled
// in, so that the init needs no lookup of its own.
func initConfig(s *Spec, mounts []Mount, filter *initconf.Seccomp, payload bool) initconf.Config {
	cfg := initconf.Config{
		Rootfs:         s.Rootfs,
		ReadonlyRootfs: s.ReadonlyRootfs,
		Hostname:       s.Hostname,
		HostNetwork:    s.HostNetwork,
		UserNS:         s.UserNS,
		Env:            s.Env,
		Process:        initconf.Process{Args: s.Args, Cwd: s.Cwd, User: s.User, TTY: s.TTY, Rows: s.Rows, Cols: s.Cols},
		Stdin:          s.Stdin != nil,
		LogMaxBytes:    s.LogMaxBytes,
		LogMaxFiles:    s.LogMaxFiles,
		Seccomp:        filter,
		Payload:        payload,
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.LogMaxFiles <= 0 {
		cfg.LogMaxFiles = DefaultLogMaxFiles
	}
	for _, m := range mounts {
		cfg.Mounts = append(cfg.Mounts, initconf.Mount{
			Tmpfs: m.Type == MountTmpfs, Source: m.Source, Target: m.Target,
			ReadOnly: m.ReadOnly, Options: m.Options,
		})
	}
	for _, l := range s.Rlimits {
		res, _ := rlimitByName(l.Type) // Validate refused unknown names
		cfg.Rlimits = append(cfg.Rlimits, initconf.Rlimit{Name: l.Type, Resource: res, Soft: l.Soft, Hard: l.Hard})
	}
	for _, c := range DefaultCapabilities {
		cfg.Caps = append(cfg.Caps, uint(c))
	}
	return cfg
}
