package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"berth/agent/runtime/cgroups"
	"berth/agent/runtime/initconf"
)

// stateFile holds a container's record in its state directory.
const stateFile = "state.json"

// record is what the agent keeps on disk about a container, enough for a
// restarted agent to find and adopt it.
type record struct {
	ID        string         `json:"id"`
	Spec      Spec           `json:"spec"`
	Pid       int            `json:"pid"`       // the init, in the host PID namespace
	StartTime uint64         `json:"startTime"` // /proc/PID/stat field 22, against PID reuse
	Cgroup    *cgroups.Group `json:"cgroup"`
	CreatedAt time.Time      `json:"createdAt"`
	Killed    bool           `json:"killed,omitempty"` // the agent sent SIGKILL to the init
	Exit      *ExitStatus    `json:"exit,omitempty"`
}

func loadRecord(dir string) (*record, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("load container state: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &r, nil
}

func (r *record) save(dir string) error {
	if err := writeJSON(filepath.Join(dir, stateFile), r); err != nil {
		return fmt.Errorf("save state of %s: %w", r.ID, err)
	}
	return nil
}

// logName is the current log file in a container's state directory.
const logName = initconf.LogName

// writeJSON writes v to path atomically (temp file and rename).
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return diskError(err)
	}
	return os.Rename(tmp, path)
}

// readExitFile returns the status the init recorded, or nil.
func readExitFile(dir string) *ExitStatus {
	data, err := os.ReadFile(filepath.Join(dir, initconf.ExitFile))
	if err != nil {
		return nil
	}
	var st ExitStatus
	if json.Unmarshal(data, &st) != nil {
		return nil
	}
	return &st
}

// procStartTime reads field 22 (starttime) of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
