package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Info is what a container's record says about it, read without
// adopting the container.
type Info struct {
	ID        string
	Spec      Spec
	Pid       int // the init, in the host PID namespace
	CreatedAt time.Time
	Running   bool
	// Exit is the exit status once recorded; nil while running, and for
	// a container that ended while no agent watched until one adopts it.
	Exit *ExitStatus
}

// Peek reads every container recorded under StateDir (and, from an agent
// before it, beside its logs), sorted by ID, without adopting any: another
// process (the node's agent) may own them, and Peek neither watches,
// finalizes nor removes. A container still being created has no record
// yet and is left out.
func (r *Runtime) Peek() ([]Info, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.DataDir, "containers"))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Info, 0, len(entries)) // ReadDir sorts by name
	for _, e := range entries {
		// Every container has a log dir; its record is on the tmpfs, or
		// beside its logs when an agent before the tmpfs started it.
		dir := r.containerDir(e.Name())
		if _, err := os.Lstat(dir); err != nil {
			dir = r.logDir(e.Name())
		}
		rec, err := loadRecord(dir)
		if err != nil {
			continue // half-made, or removed meanwhile
		}
		in := Info{ID: rec.ID, Spec: rec.Spec, Pid: rec.Pid, CreatedAt: rec.CreatedAt, Exit: rec.Exit}
		if in.Exit == nil {
			st, err := procStartTime(rec.Pid)
			in.Running = err == nil && st == rec.StartTime
			if !in.Running {
				in.Exit = readExitFile(dir)
			}
		}
		out = append(out, in)
	}
	return out, nil
}
