package controlapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/manager/validate"
	"berth/store"
)

// toStatus maps an error to a gRPC status with a message for the terminal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *validate.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrExist), errors.Is(err, store.ErrNameConflict):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrSequenceConflict):
		return status.Error(codes.Aborted, err.Error()+" (someone changed it meanwhile; run the command again)")
	case errors.Is(err, store.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrOutcomeUnknown):
		return status.Error(codes.Unknown, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func notFound(kind, ref string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, ref)
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func precondition(format string, args ...any) error {
	return status.Error(codes.FailedPrecondition, fmt.Sprintf(format, args...))
}

// errNoAgents answers logs and exec on a Control server wired without a
// dispatcher. Every manager has one (manager.go sets Config.Agents); only
// servers built bare, as some tests build them, lack it.
var errNoAgents = status.Error(codes.FailedPrecondition, "this Control server has no dispatcher to reach agents through")
