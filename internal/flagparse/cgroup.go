package flagparse

import (
	"fmt"
	"slices"
	"strings"
)

// CgroupParentHelp is the help of every --cgroup-parent flag.
const CgroupParentHelp = "cgroup all containers go under: absolute from the cgroup root, or relative to the agent's own cgroup (removed on a clean stop when no container is left)"

// CgroupParent checks a --cgroup-parent value: empty (the default,
// /berth) or a path without "." or ".." elements, which could leave the
// hierarchy or name another's group.
func CgroupParent(s string) error {
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if s != "" && (strings.Trim(s, "/") == "" || slices.Contains(parts, "..") || slices.Contains(parts, ".") || slices.Contains(parts, "")) {
		return fmt.Errorf("--cgroup-parent %q: want a path such as /berth or berth/agent1, without empty, . or .. elements", s)
	}
	return nil
}
