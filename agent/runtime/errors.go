package runtime

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors callers branch on; messages wrapping them say what and where.
var (
	// ErrCommandNotFound: the command is not in the image (or not on its PATH).
	ErrCommandNotFound = errors.New("command not found in the image")
	// ErrPermissionDenied: the command or a path is not accessible.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNoSpace: the node's disk (data dir, volume or rootfs) is full.
	ErrNoSpace = errors.New("out of disk space")
	// ErrNotFound: no container with that ID on this node.
	ErrNotFound = errors.New("container not found")
	// ErrExists: a container with that ID already exists on this node.
	ErrExists = errors.New("container already exists")
	// ErrNotRunning: the container has exited.
	ErrNotRunning = errors.New("container is not running")
	// ErrSetup: the container init failed to prepare the container.
	ErrSetup = errors.New("container setup failed")
)

// Error kinds travel from the init to the agent as strings.
const (
	kindNotFound   = "notfound"
	kindPermission = "permission"
	kindNoSpace    = "nospace"
	kindInvalid    = "invalid"
)

// errorKind classifies err for the trip over the sync socket.
func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrCommandNotFound):
		return kindNotFound
	case errors.Is(err, ErrPermissionDenied), errors.Is(err, syscall.EACCES):
		return kindPermission
	case errors.Is(err, ErrNoSpace), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return kindNoSpace
	case errors.Is(err, ErrInvalidSpec):
		return kindInvalid
	}
	return ""
}

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
	e := &setupError{msg: msg}
	switch kind {
	case kindNotFound:
		e.kind = ErrCommandNotFound
	case kindPermission:
		e.kind = ErrPermissionDenied
	case kindNoSpace:
		e.kind = ErrNoSpace
	case kindInvalid:
		e.kind = ErrInvalidSpec
	}
	return e
}

// diskError marks ENOSPC/EDQUOT failures as ErrNoSpace so users see "out of
// disk space" rather than an errno alone.
func diskError(err error) error {
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
