package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// A container's processes live in a payload subgroup of its group, which
// alone carries the pids limit, so that the limit counts them exactly and
// not the threads of the runtime's init. The init keeps its other threads
// in the group and moves only the thread that forks the container's
// processes into the payload (a v1 `tasks` write, or cgroup.threads of a
// threaded v2 subgroup: pids is a threaded controller); every process it
// forks is born there.

// payloadName is the subgroup holding a container's processes.
const payloadName = "payload"

// createPayload makes the payload subgroup: on v1 in the pids hierarchy
// only (the other controllers count the init too, as they should), on v2
// a threaded child, which turns the group into a threaded domain.
func (g *Group) createPayload() error {
	var base string
	switch {
	case g.Version == V2:
		base = g.Paths[""]
	case g.Paths["pids"] != "":
		base = g.Paths["pids"]
	default:
		return nil // no pids hierarchy: nothing to count
	}
	d := filepath.Join(base, payloadName)
	if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create cgroup %s: %w", d, err)
	}
	g.Payload = d
	if g.Version == V2 {
		return writeFile(d, "cgroup.type", "threaded")
	}
	return nil
}

// PayloadThreadsFile is the file that moves the writing thread into the
// payload subgroup when "0" is written to it, or "" when the group has
// none (a v1 host without the pids controller, a group saved by an older
// agent).
func (g *Group) PayloadThreadsFile() string {
	switch {
	case g.Payload == "":
		return ""
	case g.Version == V2:
		return filepath.Join(g.Payload, "cgroup.threads")
	default:
		return filepath.Join(g.Payload, "tasks")
	}
}

// pidsDir is where the pids limit and count of the group are kept.
func (g *Group) pidsDir() string {
	if g.Payload != "" {
		return g.Payload
	}
	if g.Version == V2 {
		return g.Paths[""]
	}
	return g.Paths["pids"]
}

// setPidsLimit writes pids.max where the group's processes are counted.
func (g *Group) setPidsLimit(n int64) error {
	d := g.pidsDir()
	if d == "" {
		return fmt.Errorf("cgroup v1 pids: %w", ErrControllerMissing)
	}
	if g.Version == V2 && g.Payload != "" {
		// The group's parents pass pids on to the group (setV2 did), the
		// group passes it on to its payload.
		if err := enableControllers(g.Payload, []string{"pids"}); err != nil {
			return err
		}
	}
	return writeFile(d, "pids.max", strconv.FormatInt(n, 10))
}
