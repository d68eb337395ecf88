package manager

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The manager's gRPC server guards itself against what clients send: a
// bug a request trips answers that request with Internal instead of
// killing the manager (and with it the Raft member and every agent
// session), and no client can make it hold unbounded requests or streams.
const (
	// maxRecvMsgSize bounds one request. The largest legitimate ones are a
	// store batch a follower forwards to the leader (a service with its
	// previous spec, each at most validate.MaxSpecBytes) and a secret (at
	// most validate.MaxSecretSize). It is gRPC's default, made explicit.
	maxRecvMsgSize = 4 << 20
	// maxConcurrentStreams bounds the calls open at once on one
	// connection. A CLI watching tasks, an agent's session and a follower
	// forwarding writes use a handful; past the bound a client's new calls
	// wait for one to end.
	maxConcurrentStreams = 256
)

// guardOptions are the server options that bound requests and recover
// from panics. The recovery interceptors come first, so they also catch a
// panic in the interceptors after them.
func guardOptions(log *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.ChainUnaryInterceptor(recoverUnary(log)),
		grpc.ChainStreamInterceptor(recoverStream(log)),
	}
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, panicked(log, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = panicked(log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

// panicked logs a recovered panic with its stack and returns what the
// client is told: that it hit a bug, not what the bug touched.
func panicked(log *slog.Logger, method string, r any) error {
	log.Error("recovered from a panic in a gRPC handler; this is a bug, please report it with this log",
		"method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "%s failed on an internal error (a bug); the manager logged it and goes on", method)
}
