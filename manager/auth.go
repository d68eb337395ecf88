package manager

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/manager/admit"
	"berth/manager/mux"
	"berth/store"
)

// access says who may call a service: any caller (open), or the
// certificate roles listed; manager marks the services only a current
// manager may call, whatever its certificate says.
type access struct {
	open    bool
	roles   []string
	manager bool
}

// callers says who may call each service. NodeCA is open: a joining node
// has no certificate yet and proves itself with a join token.
var callers = map[string]access{
	"/berth.v1.NodeCA/":         {open: true},
	"/berth.v1.Control/":        {roles: []string{ca.RoleManager, ca.RoleClient}, manager: true},
	"/berth.v1.Dispatcher/":     {roles: []string{ca.RoleWorker, ca.RoleManager}},
	"/berth.v1.RaftMembership/": {roles: []string{ca.RoleManager}, manager: true},
}

// authorize checks the caller of a full method name: its certificate's
// cluster and role, and that the store still counts its node a member
// (and, for manager-only services, a manager).
func (m *Manager) authorize(ctx context.Context, method string) error {
	var a access
	found := false
	for prefix, acc := range callers {
		if strings.HasPrefix(method, prefix) {
			a, found = acc, true
			break
		}
	}
	if !found {
		return status.Errorf(codes.PermissionDenied, "unknown method %s", method)
	}
	id, ok := mux.PeerIdentity(ctx)
	if a.open {
		// A member that presents its certificate must still be one.
		if ok && id.ClusterID == m.clusterID {
			return m.admit(id, false)
		}
		return nil
	}
	if !ok {
		if err := mux.Unverified(ctx, m.id.creds); err != nil {
			return status.Errorf(codes.Unauthenticated, "%v (a manager's DATA_DIR/client, BERTH_TLS_DIR)", err)
		}
		return status.Error(codes.Unauthenticated, "no client certificate of this cluster: use the bundle in a manager's DATA_DIR/client (BERTH_TLS_DIR)")
	}
	if id.ClusterID != m.clusterID {
		return status.Errorf(codes.PermissionDenied, "certificate of cluster %s, this is cluster %s", id.ClusterID, m.clusterID)
	}
	if !slices.Contains(a.roles, id.Role) {
		return status.Errorf(codes.PermissionDenied, "a %s certificate may not call %s", id.Role, method)
	}
	return m.admit(id, a.manager)
}

// admit refuses a certificate whose node the store says was removed and,
// when the call needs a manager, one whose manager was demoted and no
// longer votes (a demotion in progress still votes: it must finish).
func (m *Manager) admit(id ca.Identity, manager bool) error {
	var removed, demoted error
	m.be.Store().View(func(tx store.ReadTx) {
		removed = admit.Removal(tx, id)
		if manager {
			demoted = admit.Demotion(tx, id)
		}
	})
	if removed != nil {
		return removed
	}
	if demoted != nil && !m.votes(admit.Owner(id)) {
		return demoted
	}
	return nil
}

// admitRaft says whether a manager's certificate may open a Raft
// connection to this manager (mux.AdmitRaft).
func (m *Manager) admitRaft(id ca.Identity) error { return m.admit(id, true) }

// votes says whether node id is a voter in this manager's latest Raft
// configuration.
func (m *Manager) votes(id string) bool {
	members, err := m.be.Members()
	if err != nil {
		return false
	}
	for _, rm := range members {
		if rm.GetNodeId() == id {
			return rm.GetVoter()
		}
	}
	return false
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
