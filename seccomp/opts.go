package seccomp

import (
	"fmt"
	"strings"
)

// Values of a container's seccomp setting other than a profile's JSON.
const (
	// Unconfined runs without a filter.
	Unconfined = "unconfined"
	// Builtin names Docker's default profile, as in `docker run`.
	Builtin = "builtin"
)

// OptError is a --security-opt entry berth cannot apply: Index is its
// place in the list.
type OptError struct {
	Index   int
	Problem string
	Fix     string
}

func (e *OptError) Error() string {
	return fmt.Sprintf("security_opts[%d]: %s; %s", e.Index, e.Problem, e.Fix)
}

// SecurityOpts reads Docker's --security-opt entries as they travel in a
// container spec — seccomp=unconfined, seccomp=builtin or seccomp=<profile
// JSON> (the CLI reads seccomp=FILE into JSON, as Docker's does) — and
// returns the container's seccomp setting: "" for Docker's default profile,
// Unconfined, or the profile's JSON, unchecked (see Parse). Any other
// option is refused with an *OptError: berth applies no AppArmor or SELinux
// label, and always sets no_new_privs.
func SecurityOpts(opts []string) (string, error) {
	setting, seen := "", false
	for i, o := range opts {
		bad := func(problem, fix string) error { return &OptError{Index: i, Problem: problem, Fix: fix} }
		key, val, ok := strings.Cut(o, "=")
		switch {
		case key == "seccomp" && ok:
			if seen {
				return "", bad("seccomp is given twice", "give one seccomp= option")
			}
			seen = true
			switch v := strings.TrimSpace(val); {
			case v == Unconfined:
				setting = Unconfined
			case v == Builtin:
				setting = ""
			case strings.HasPrefix(v, "{"):
				setting = v
			default:
				return "", bad(fmt.Sprintf("seccomp=%s is neither unconfined, builtin nor a profile's JSON", val),
					"send the profile's content (the berth CLI reads seccomp=FILE for you)")
			}
		case key == "no-new-privileges" && (!ok || val == "true"):
			// Always on: every container process runs with no_new_privs.
		case key == "no-new-privileges":
			return "", bad(fmt.Sprintf("%q is not supported: berth always sets no_new_privs", o), "remove it")
		case key == "apparmor" || key == "label" || strings.HasPrefix(o, "label:"):
			return "", bad(fmt.Sprintf("%q is not supported: berth applies no AppArmor profile or SELinux label", o), "remove it")
		case strings.HasPrefix(o, "seccomp"):
			return "", bad(fmt.Sprintf("%q is not a seccomp option", o), "use seccomp=unconfined, seccomp=builtin or seccomp=FILE")
		default:
			return "", bad(fmt.Sprintf("%q is not supported", o), "berth supports seccomp=unconfined|builtin|FILE only")
		}
	}
	return setting, nil
}

// Check compiles p for a container with none and with all of the
// capabilities its rules depend on, so that a profile accepted by a manager
// compiles on any node.
func (p *Profile) Check() error {
	caps, err := p.capsNamed()
	if err != nil {
		return err
	}
	for _, set := range [][]string{nil, caps} {
		if _, err := p.Compile(set); err != nil {
			return err
		}
	}
	return nil
}
