package manager

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/manager/mux"
)

// callers says which certificate roles may call each service. NodeCA is
// open: a joining node has no certificate yet and proves itself with a
// join token.
var callers = map[string][]string{
	"/berth.v1.NodeCA/":         nil,
	"/berth.v1.Control/":        {ca.RoleManager, ca.RoleClient},
	"/berth.v1.Dispatcher/":     {ca.RoleWorker, ca.RoleManager},
	"/berth.v1.RaftMembership/": {ca.RoleManager},
}

// authorize checks the caller's role for a full method name.
func (m *Manager) authorize(ctx context.Context, method string) error {
	for prefix, roles := range callers {
		if !strings.HasPrefix(method, prefix) {
			continue
		}
		if roles == nil {
			return nil
		}
		id, ok := mux.PeerIdentity(ctx)
		if !ok {
			if err := mux.Unverified(ctx, m.id.creds); err != nil {
				return status.Errorf(codes.Unauthenticated, "%v (a manager's DATA_DIR/client, BERTH_TLS_DIR)", err)
			}
			return status.Error(codes.Unauthenticated, "no client certificate of this cluster: use the bundle in a manager's DATA_DIR/client (BERTH_TLS_DIR)")
		}
		if id.ClusterID != m.clusterID {
			return status.Errorf(codes.PermissionDenied, "certificate of cluster %s, this is cluster %s", id.ClusterID, m.clusterID)
		}
		for _, r := range roles {
			if id.Role == r {
				return nil
			}
		}
		return status.Errorf(codes.PermissionDenied, "a %s certificate may not call %s", id.Role, method)
	}
	return status.Errorf(codes.PermissionDenied, "unknown method %s", method)
}

func (m *Manager) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := m.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (m *Manager) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := m.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}
