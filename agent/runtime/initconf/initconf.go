// Package initconf is the contract between the agent's runtime and the
// container init (package initproc, built into its own small binary): the
// descriptors the agent passes, the config it sends, the replies and exec
// messages, the files the init writes, and the errors that cross over.
//
// Both sides import it, so it must import nothing but the standard
// library: every package here ends up in every container's PID 1.
package initconf

import (
	"syscall"
	"time"
)

// Arg0 is os.Args[0] of a container init, whichever binary runs it.
const Arg0 = "berth-init"

// FdSync is the one descriptor but stdio (/dev/null) that the agent
// passes to the init when it starts it: a socketpair, the config frame
// in, Reply out. The rest comes with the config, so that an init can be
// started before its container is known (a spare).
const FdSync = 3

// Where the init puts the directories that come with its config.
const (
	FdStateDir = 4 // the container's state directory, on a tmpfs (exit file)
	FdLogDir   = 5 // the container's log directory, on disk (LogName)
)

// Descriptors travel with the config frame (SCM_RIGHTS), in this order:
// the container's state directory, its log directory, the init's own log
// (its stdout and stderr from then on), the listening unix socket for
// exec requests, a mount tree (open_tree) of the rootfs and one of the
// source of each bind mount in Config.Mounts (not Tmpfs), in order; the
// payload cgroup's
// threads file, when Config.Payload; the user process's stdin, when
// Config.Stdin. The agent makes them while the init's runtime starts,
// rather than before it starts the init: they are off the start's
// critical path.

// Go is the byte the agent sends on FdSync after the config once the init
// is in the container's cgroup and PreStart has run: until it comes, the
// init builds the container's filesystem but starts no process.
const Go = 'G'

// Files the init writes.
const (
	// ExitFile is written in the state directory just before the init
	// exits: the user process's ExitStatus, readable by any agent.
	ExitFile = "exit.json"
	// LogName is the current log file in the log directory; rotated files
	// are LogName.1 (newest) to LogName.N.
	LogName = "container.log"
)

// A log file holds one record per line in the CRI logging format (the
// kubelet writes the same): "TIME STREAM TAG DATA\n", TIME in RFC 3339
// with nanoseconds (UTC), STREAM LogStdout or LogStderr, TAG LogFull for
// a whole line (its newline is the record's) or LogPartial for a part of
// a line that had not ended in the chunk read. The init writes records
// whole, never split across rotated files; the agent reads them back for
// `berth service logs` (--since, --timestamps, stdout and stderr apart).
const (
	LogStdout  = "stdout"
	LogStderr  = "stderr"
	LogFull    = 'F'
	LogPartial = 'P'
)

// DefaultPath is the PATH of a container process whose environment has none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config is what the agent sends the init over FdSync. The agent has
// resolved everything a lookup on the host needs (volume paths, rlimit
// names, capability numbers, the seccomp program) and filled in defaults.
type Config struct {
	Rootfs         string   `json:"rootfs"`
	ReadonlyRootfs bool     `json:"readonlyRootfs,omitempty"`
	Hostname       string   `json:"hostname,omitempty"`
	HostNetwork    bool     `json:"hostNetwork,omitempty"`
	UserNS         bool     `json:"userNS,omitempty"`
	Env            []string `json:"env,omitempty"` // every process's, before its own
	Process        Process  `json:"process"`       // the user process
	Mounts         []Mount  `json:"mounts,omitempty"`
	Rlimits        []Rlimit `json:"rlimits,omitempty"`
	// Caps are the capability numbers container processes keep; every
	// other one is dropped from all sets.
	Caps        []uint `json:"caps"`
	LogMaxBytes int64  `json:"logMaxBytes"`
	LogMaxFiles int    `json:"logMaxFiles"`
	// Seccomp is the compiled filter; nil runs unconfined.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
	// Payload: a payload cgroup's threads file is sent, which the init's
	// forking thread joins.
	Payload bool `json:"payload,omitempty"`
	// Stdin: the user process's stdin is sent (else it reads /dev/null).
	Stdin bool `json:"stdin,omitempty"`
}

// Process is a process the init starts in the container.
type Process struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"` // added to Config.Env
	Cwd  string   `json:"cwd,omitempty"`
	User string   `json:"user,omitempty"` // uid[:gid] or name[:group] from the image
	TTY  bool     `json:"tty,omitempty"`
	// Rows and Cols size the terminal before the process starts.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// Mount is one mount the init places in the rootfs: a bind of a host path
// (volumes arrive as their host directory) or a tmpfs.
type Mount struct {
	Tmpfs    bool     `json:"tmpfs,omitempty"`
	Source   string   `json:"source,omitempty"` // host path of a bind
	Target   string   `json:"target"`
	ReadOnly bool     `json:"readOnly,omitempty"`
	Options  []string `json:"options,omitempty"` // tmpfs data options
}

// Rlimit is one setrlimit of the container's processes.
type Rlimit struct {
	Name     string `json:"name"` // for messages
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// Seccomp is a compiled seccomp program.
type Seccomp struct {
	Flags uint32 `json:"flags,omitempty"` // SECCOMP_FILTER_FLAG_*
	// Code is struct sock_filter[] in host byte order. It travels raw
	// after the JSON in the config frame (frame.go), not in it.
	Code []byte `json:"-"`
}

// Reply is the init's answer once the user process runs or setup failed.
type Reply struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// ExecRequest asks a running init to start one more process; the stdio
// descriptors travel with it (three, or none with a TTY).
type ExecRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	User string   `json:"user,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
	// Rows and Cols size the terminal before the process starts.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// ExecMessage flows both ways on an exec connection: the client sends
// Signal; the init replies Pid (or Error), then Exit.
type ExecMessage struct {
	Pid    int    `json:"pid,omitempty"`
	Error  string `json:"error,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Exit   *int   `json:"exit,omitempty"`
	Signal int    `json:"signal,omitempty"`
}

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code       int       `json:"code"`             // exit code, 128+signal when killed
	Signal     int       `json:"signal,omitempty"` // the signal that killed the process
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	Reason     string    `json:"reason"` // "Completed", "Error", "OOMKilled", "Killed", "Lost"
	FinishedAt time.Time `json:"finishedAt"`
}

// Exit reasons.
const (
	ReasonCompleted = "Completed" // exit code 0
	ReasonError     = "Error"     // non-zero exit code
	ReasonKilled    = "Killed"    // ended by a signal
	ReasonOOMKilled = "OOMKilled" // the kernel's OOM killer ended it
	ReasonLost      = "Lost"      // the status could not be recovered after a restart
)

// StatusOf turns a wait status into an ExitStatus finished now.
func StatusOf(ws syscall.WaitStatus) ExitStatus {
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
