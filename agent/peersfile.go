package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"

	"berth/ca"
)

// managersFile keeps the managers the last session named, so that an agent
// restarted with only --join addresses that are gone can still reach the
// cluster (Swarm keeps its remotes the same way).
const managersFile = "managers.json"

// loadManagers reads the managers a previous run saved; none if absent.
func loadManagers(dataDir string) []string {
	b, err := os.ReadFile(filepath.Join(dataDir, managersFile))
	if err != nil {
		return nil
	}
	var addrs []string
	if json.Unmarshal(b, &addrs) != nil {
		return nil
	}
	return addrs
}

// saveManagers records the managers a session named.
func saveManagers(dataDir string, addrs []string) error {
	b, err := json.Marshal(addrs)
	if err != nil {
		return err
	}
	return ca.WriteFileAtomic(filepath.Join(dataDir, managersFile), b, 0o600)
}

// withSaved starts p with the managers a previous run saved; they are
// tried before the --join addresses, as a session's list would be.
func (p *peers) withSaved(saved []string) *peers {
	p.named = slices.Clone(saved)
	return p
}
