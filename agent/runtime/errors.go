package runtime

import (
	"errors"

	"berth/agent/runtime/initconf"
)

// Errors callers branch on; messages wrapping them say what and where.
var (
	// ErrCommandNotFound: the command is not in the image (or not on its PATH).
	ErrCommandNotFound = initconf.ErrCommandNotFound
	// ErrPermissionDenied: the command or a path is not accessible.
	ErrPermissionDenied = initconf.ErrPermissionDenied
	// ErrNoSpace: the node's disk (data dir, volume or rootfs) is full.
	ErrNoSpace = initconf.ErrNoSpace
	// ErrNotFound: no container with that ID on this node.
	ErrNotFound = errors.New("container not found")
	// ErrExists: a container with that ID already exists on this node.
	ErrExists = errors.New("container already exists")
	// ErrNotRunning: the container has exited.
	ErrNotRunning = errors.New("container is not running")
	// ErrSetup: the container init failed to prepare the container.
	ErrSetup = errors.New("container setup failed")
)

// setupError is an init's failure rebuilt in the agent: the init's message,
// matching ErrSetup and the sentinel of its kind.
type setupError struct {
	msg  string
	kind error
}

func (e *setupError) Error() string { return e.msg }

func (e *setupError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrSetup}
	}
	return []error{ErrSetup, e.kind}
}

// remoteError rebuilds an init's error with the sentinel for its kind.
func remoteError(msg, kind string) error {
	return &setupError{msg: msg, kind: initconf.KindError(kind)}
}

// diskError marks ENOSPC/EDQUOT failures as ErrNoSpace so users see "out of
// disk space" rather than an errno alone.
func diskError(err error) error { return initconf.DiskError(err) }
