package runtime

import (
	"fmt"

	"berth/agent/runtime/initconf"
	"berth/seccomp"
)

// seccompFilter compiles the filter s asks for (Docker's default profile
// unless Spec.Seccomp says otherwise) for the capabilities container
// processes keep. Programs are cached: container starts are hot.
func (r *Runtime) seccompFilter(s *Spec) (*initconf.Seccomp, error) {
	if s.Seccomp == seccomp.Unconfined {
		return nil, nil
	}
	caps := make([]string, len(DefaultCapabilities))
	for i, c := range DefaultCapabilities {
		caps[i] = c.String()
	}
	p, err := r.filters.Compile(s.Seccomp, caps)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	return &initconf.Seccomp{Flags: p.Flags, Code: p.Encode()}, nil
}
