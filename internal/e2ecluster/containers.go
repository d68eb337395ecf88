package e2ecluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Containers counts, by agent name, the containers each agent's runtime
// still holds on disk: running ones and exited ones not yet deleted. An
// agent deletes a container once its task is gone, so zero everywhere
// means a removed service has left nothing behind.
func (c *Cluster) Containers() (map[string]int, error) {
	out := map[string]int{}
	for _, a := range c.Agents {
		entries, err := os.ReadDir(a.ContainerStateDir())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("containers of %s: %w", a.Name, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				out[a.Name]++
			}
		}
	}
	return out, nil
}

// ContainerStateDir is where an agent node's runtime records its containers,
// one directory each holding state.json: on the runtime's state tmpfs
// (agent/runtime statedir.go), under the agent's runtime data dir.
func (a *Node) ContainerStateDir() string {
	return filepath.Join(a.DataDir, "runtime", "state", "containers")
}
