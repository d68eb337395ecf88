package validate

import (
	"errors"
	"fmt"
	"strings"

	"berth/seccomp"
)

// securityOpts checks Docker's --security-opt entries: seccomp=unconfined,
// seccomp=builtin or a profile that parses and compiles for any capability
// set; berth refuses the options it does not apply rather than ignore them.
func securityOpts(opts []string) error {
	profile, err := seccomp.SecurityOpts(opts)
	if oe := (*seccomp.OptError)(nil); errors.As(err, &oe) {
		return fieldErr(fmt.Sprintf("security_opts[%d]", oe.Index), oe.Problem, "%s", oe.Fix)
	}
	if err != nil {
		return fieldErr("security_opts", err.Error(), "use seccomp=unconfined, seccomp=builtin or seccomp=FILE")
	}
	if profile == "" || profile == seccomp.Unconfined {
		return nil
	}
	p, err := seccomp.Parse([]byte(profile))
	if err == nil {
		err = p.Check()
	}
	if err != nil {
		return fieldErr(seccompField(opts), err.Error(), "fix the profile, or use seccomp=builtin for Docker's default profile")
	}
	return nil
}

// seccompField names the entry that holds the seccomp profile.
func seccompField(opts []string) string {
	for i, o := range opts {
		if strings.HasPrefix(o, "seccomp=") {
			return fmt.Sprintf("security_opts[%d]", i)
		}
	}
	return "security_opts"
}
