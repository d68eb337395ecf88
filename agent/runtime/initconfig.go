package runtime

import (
	"encoding/json"
	"os"
	"strconv"
	"syscall"
	"time"
)

// initArg0 is os.Args[0] of a re-executed container init.
const initArg0 = "berth-init"

// File descriptors the agent passes to the init.
const (
	fdSync     = 3 // socketpair: config in, initReply out
	fdStateDir = 4 // the container's state directory (logs, exit file)
	fdExec     = 5 // listening unix socket for exec requests
	fdPayload  = 6 // the payload cgroup's threads file (or /dev/null): see joinPayload
)

// exitFile is written by the init, in the state directory, just before it
// exits: the user process's ExitStatus, readable by any agent.
const exitFile = "exit.json"

// initConfig is what the agent sends the init over fdSync.
type initConfig struct {
	Spec   Spec    `json:"spec"`
	Mounts []Mount `json:"mounts"` // Spec.Mounts with volume sources resolved to host paths
	UserNS bool    `json:"userNS"`
	// Seccomp is the compiled filter; nil runs unconfined.
	Seccomp *seccompFilter `json:"seccomp,omitempty"`
	// Payload: fdPayload is the payload cgroup's threads file, which the
	// init's forking thread joins.
	Payload bool `json:"payload,omitempty"`
}

// initReply is the init's answer once the user process runs or setup failed.
type initReply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// execRequest asks a running init to start one more process.
type execRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	User string   `json:"user,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
}

// execMessage flows both ways on an exec connection: the client sends
// Signal; the init replies Pid (or Error), then Exit.
type execMessage struct {
	Pid    int    `json:"pid,omitempty"`
	Error  string `json:"error,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Signal int    `json:"signal,omitempty"`
}

// statusOf turns a wait status into an ExitStatus.
func statusOf(ws syscall.WaitStatus) ExitStatus {
	s := ExitStatus{FinishedAt: time.Now().UTC()}
	switch {
	case ws.Signaled():
		s.Signal = int(ws.Signal())
		s.Code = 128 + s.Signal
		s.Reason = ReasonKilled
	default:
		s.Code = ws.ExitStatus()
		s.Reason = ReasonCompleted
		if s.Code != 0 {
			s.Reason = ReasonError
		}
	}
	return s
}

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
