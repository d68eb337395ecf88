package initconf

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors a container's setup or an exec can end with; package runtime
// exports them under the same names.
var (
	ErrCommandNotFound  = errors.New("command not found in the image")
	ErrPermissionDenied = errors.New("permission denied")
	ErrNoSpace          = errors.New("out of disk space")
	ErrInvalidSpec      = errors.New("invalid container spec")
)

// Error kinds travel from the init to the agent as strings.
const (
	kindNotFound   = "notfound"
	kindPermission = "permission"
	kindNoSpace    = "nospace"
	kindInvalid    = "invalid"
)

// KindOf classifies err for the trip over the sync or exec socket.
func KindOf(err error) string {
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

// KindError is the sentinel error of a kind KindOf returned, or nil.
func KindError(kind string) error {
	switch kind {
	case kindNotFound:
		return ErrCommandNotFound
	case kindPermission:
		return ErrPermissionDenied
	case kindNoSpace:
		return ErrNoSpace
	case kindInvalid:
		return ErrInvalidSpec
	}
	return nil
}

// DiskError marks ENOSPC/EDQUOT failures as ErrNoSpace so users see "out of
// disk space" rather than an errno alone.
func DiskError(err error) error {
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
