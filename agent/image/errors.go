package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinel errors callers branch on with errors.Is. The errors this package
// returns carry a message for users and match one of these.
var (
	// ErrNotFound means the image, tag, platform or snapshot does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnreachable means the registry could not be reached or failed.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnauthorized means the registry refused the credentials (or their absence).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrDigestMismatch means downloaded content did not match its digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrNoSpace means the disk holding the image root is full.
	ErrNoSpace = errors.New("out of disk space")
	// ErrPermission means the agent may not write under the image root.
	ErrPermission = errors.New("permission denied")
	// ErrBadLayer means a layer is malformed or tries to write outside itself.
	ErrBadLayer = errors.New("bad layer")
	// ErrLayerTooLarge means a layer unpacks to more bytes or entries than
	// the store's limits (Config.MaxLayerSize, Config.MaxLayerEntries).
	ErrLayerTooLarge = errors.New("layer too large")
	// ErrInvalid means an argument (reference, snapshot key) is malformed.
	ErrInvalid = errors.New("invalid argument")
)

// Error is a user-facing error of one of the sentinel kinds.
type Error struct {
	Kind error  // one of the Err* sentinels
	Msg  string // what failed, for users
	Err  error  // the cause, if any
}

// Error returns the message, then the cause.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

// Is reports whether target is the error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func newErr(kind error, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// registryErr turns an error from go-containerregistry into one of ours.
func registryErr(err error, ref, registry string) error {
	if err == nil {
		return nil
	}
	var ours *Error
	if errors.As(err, &ours) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return transportErr(te, ref, registry)
	}
	if isDigestErr(err) {
		return newErr(ErrDigestMismatch, err, "pull %q: content from registry %s does not match its digest", ref, registry)
	}
	if isNetErr(err) {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op // "dial tcp …: connection refused", not every URL tried
		}
		return newErr(ErrUnreachable, err, "registry %s unreachable", registry)
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

func transportErr(te *transport.Error, ref, registry string) error {
	codes := map[transport.ErrorCode]bool{}
	for _, d := range te.Errors {
		codes[d.Code] = true
	}
	switch {
	case te.StatusCode == 401 || te.StatusCode == 403 ||
		codes[transport.UnauthorizedErrorCode] || codes[transport.DeniedErrorCode]:
		return newErr(ErrUnauthorized, nil, "registry %s refused access to %q: %s; check the credentials configured for %s",
			registry, ref, shortTransportMsg(te), registry)
	case te.StatusCode == 404 || codes[transport.ManifestUnknownErrorCode] ||
		codes[transport.NameUnknownErrorCode] || codes[transport.BlobUnknownErrorCode]:
		return newErr(ErrNotFound, nil, "image %q not found in registry %s", ref, registry)
	case te.StatusCode >= 500:
		return newErr(ErrUnreachable, te, "registry %s failed", registry)
	}
	return fmt.Errorf("pull %s: %w", ref, te)
}

func shortTransportMsg(te *transport.Error) string {
	if len(te.Errors) > 0 {
		return te.Errors[0].String()
	}
	return fmt.Sprintf("HTTP %d", te.StatusCode)
}

// isDigestErr recognises go-containerregistry's verification failures, whose
// type is internal to that module.
func isDigestErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "error verifying") || strings.Contains(s, "digest mismatch")
}

func isNetErr(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &op), errors.As(err, &dns):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	}
	s := err.Error()
	return strings.Contains(s, "server gave HTTP response to HTTPS client") ||
		strings.Contains(s, "tls: ") || strings.Contains(s, "x509: ")
}

// diskErr turns a local file system error under root into one of ours.
func diskErr(err error, root, what string) error {
	var ours *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ours):
		return newErr(ours.Kind, ours.Err, "%s: %s", what, ours.Msg)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return newErr(ErrNoSpace, err, "%s: out of disk space under %s", what, root)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return newErr(ErrPermission, err, "%s: permission denied under %s", what, root)
	}
	return fmt.Errorf("%s: %w", what, err)
}
