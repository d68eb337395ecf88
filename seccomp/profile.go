package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	mseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Profile is a seccomp profile in Docker's JSON format: a default action,
// rules for syscalls with argument conditions, and rules included or
// excluded by the container's capabilities, architecture or kernel.
type Profile struct {
	json []byte // nil for Docker's default profile
}

// Default is Docker's default profile (github.com/moby/profiles/seccomp).
func Default() *Profile { return &Profile{} }

// IsDefault reports whether p is Docker's default profile.
func (p *Profile) IsDefault() bool { return p.json == nil }

// Parse reads a profile and checks every field a filter is built from; an
// error names the field (e.g. syscalls[3].action) and what to use instead.
func Parse(data []byte) (*Profile, error) {
	var cfg mseccomp.Seccomp
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("seccomp profile is not valid JSON: %w", err)
	}
	if err := check(&cfg); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return &Profile{json: bytes.Clone(data)}, nil
}

// resolve applies the profile's includes and excludes for a container
// with caps (names such as "CAP_SYS_ADMIN") on this host, as Docker does.
func (p *Profile) resolve(caps []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	if p.json == nil {
		return mseccomp.GetDefaultProfile(rs)
	}
	return mseccomp.LoadProfile(string(p.json), rs)
}

func check(cfg *mseccomp.Seccomp) error {
	if cfg.DefaultAction == "" {
		return errors.New(`defaultAction is missing: set one such as "SCMP_ACT_ERRNO", or use seccomp=unconfined to run without a filter`)
	}
	if _, err := retValue(cfg.DefaultAction, cfg.DefaultErrnoRet); err != nil {
		return fmt.Errorf("defaultAction: %w", err)
	}
	if cfg.ListenerPath != "" || cfg.ListenerMetadata != "" {
		return errors.New("listenerPath: seccomp notification listeners are not supported; remove listenerPath and listenerMetadata")
	}
	if len(cfg.Architectures) > 0 && len(cfg.ArchMap) > 0 {
		return errors.New("architectures and archMap are both set: use one of them")
	}
	if _, err := filterFlags(cfg.Flags); err != nil {
		return err
	}
	if len(cfg.LinuxSeccomp.Syscalls) > 0 {
		return errors.New("syscalls: rules must be listed once")
	}
	for i, s := range cfg.Syscalls {
		if s == nil {
			return fmt.Errorf("syscalls[%d]: a rule is empty", i)
		}
		if err := checkRule(s); err != nil {
			return fmt.Errorf("syscalls[%d]: %w", i, err)
		}
	}
	return nil
}

func checkRule(s *mseccomp.Syscall) error {
	switch {
	case s.Name != "" && len(s.Names) > 0:
		return errors.New("name and names are both set: use names")
	case s.Name == "" && len(s.Names) == 0:
		return errors.New(`names is empty: list syscalls such as ["mkdir"]`)
	}
	for j, n := range s.Names {
		if n == "" {
			return fmt.Errorf("names[%d] is empty", j)
		}
	}
	if _, err := retValue(s.Action, s.ErrnoRet); err != nil {
		return fmt.Errorf("action: %w", err)
	}
	for j, a := range s.Args {
		if err := checkArg(a); err != nil {
			return fmt.Errorf("args[%d]: %w", j, err)
		}
	}
	return nil
}

func checkArg(a specs.LinuxSeccompArg) error {
	if a.Index > 5 {
		return fmt.Errorf("index %d: a syscall has arguments 0 to 5", a.Index)
	}
	switch a.Op {
	case specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
		specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual:
		return nil
	}
	return fmt.Errorf("op %q: use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ", a.Op)
}

// retValue is the filter's return value for an action; errno (the rule's
// errnoRet) defaults to EPERM, as in runc.
func retValue(act specs.LinuxSeccompAction, errno *uint) (uint32, error) {
	var base uint32
	takesData := false
	switch act {
	case specs.ActKill, specs.ActKillThread:
		base = unix.SECCOMP_RET_KILL_THREAD
	case specs.ActKillProcess:
		base = unix.SECCOMP_RET_KILL_PROCESS
	case specs.ActTrap:
		base = unix.SECCOMP_RET_TRAP
	case specs.ActErrno:
		base, takesData = unix.SECCOMP_RET_ERRNO, true
	case specs.ActTrace:
		base, takesData = unix.SECCOMP_RET_TRACE, true
	case specs.ActAllow:
		base = unix.SECCOMP_RET_ALLOW
	case specs.ActLog:
		base = unix.SECCOMP_RET_LOG
	case specs.ActNotify:
		return 0, errors.New("SCMP_ACT_NOTIFY needs a notification listener, which berth does not run; use SCMP_ACT_ERRNO")
	default:
		return 0, fmt.Errorf("%q is not an action: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG", act)
	}
	if errno == nil {
		if takesData {
			return base | uint32(unix.EPERM), nil
		}
		return base, nil
	}
	if !takesData {
		return 0, fmt.Errorf("errnoRet is only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE; remove it from %s", act)
	}
	if *errno > 4095 {
		return 0, fmt.Errorf("errnoRet %d is not an errno: use 1 to 4095, e.g. 1 for EPERM", *errno)
	}
	return base | uint32(*errno), nil
}

// filterFlags turns the profile's flags into seccomp(2) flags.
func filterFlags(flags []specs.LinuxSeccompFlag) (uint32, error) {
	var out uint32
	for _, f := range flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			out |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			out |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case "SECCOMP_FILTER_FLAG_TSYNC":
			// Every process of the container starts under the filter
			// already: there are no threads to synchronise.
		default:
			return 0, fmt.Errorf("flags: %q is not supported; use SECCOMP_FILTER_FLAG_LOG or SECCOMP_FILTER_FLAG_SPEC_ALLOW", f)
		}
	}
	return out, nil
}

// capName turns "sys_admin" or "CAP_SYS_ADMIN" into "CAP_SYS_ADMIN".
func capName(c string) string {
	return "CAP_" + strings.TrimPrefix(strings.ToUpper(c), "CAP_")
}

// capsNamed lists the capabilities p's includes and excludes name.
func (p *Profile) capsNamed() ([]string, error) {
	cfg := mseccomp.DefaultProfile()
	if p.json != nil {
		cfg = &mseccomp.Seccomp{}
		if err := json.Unmarshal(p.json, cfg); err != nil {
			return nil, fmt.Errorf("seccomp profile is not valid JSON: %w", err)
		}
	}
	var caps []string
	for _, s := range cfg.Syscalls {
		for _, f := range []*mseccomp.Filter{s.Includes, s.Excludes} {
			if f != nil {
				caps = append(caps, f.Caps...)
			}
		}
	}
	return caps, nil
}
