package admit

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// clientPrefix starts the node ID of a client certificate; the rest is
// the ID of the manager that issued it.
const clientPrefix = "client-"

// ClientID is the node ID a manager's client bundle certificate carries:
// the bundle speaks for that manager, and stops when it is demoted or
// removed.
func ClientID(managerID string) string { return clientPrefix + managerID }

// Owner is the node a certificate speaks for: its own, or for a client
// certificate the manager that issued it.
func Owner(id ca.Identity) string {
	if id.Role == ca.RoleClient {
		if m, ok := strings.CutPrefix(id.NodeID, clientPrefix); ok {
			return m
		}
	}
	return id.NodeID
}

// Removed is the refusal of a removed node's certificate.
func Removed(nodeID string) error {
	return status.Error(codes.PermissionDenied, removedMessage(nodeID))
}

func removedMessage(nodeID string) string {
	return fmt.Sprintf("node %s was removed from the cluster; join again with a token", nodeID)
}

// Removal refuses id when the node it speaks for was removed.
func Removal(tx store.ReadTx, id ca.Identity) error {
	node := Owner(id)
	if tx.GetRemovedNode(node) == nil {
		return nil
	}
	if id.Role == ca.RoleClient {
		return status.Errorf(codes.PermissionDenied, "%s, and this client certificate was issued by it: use the client bundle of a current manager (its DATA_DIR/client, BERTH_TLS_DIR)", removedMessage(node))
	}
	return Removed(node)
}

// Demotion refuses a manager or client certificate whose manager the
// store now holds as a worker that is not being promoted: `berth node
// demote` takes the role away, whatever the certificate says. A node the
// store does not hold yet is admitted — a manager joining the cluster, or
// one this store has not caught up with — as is a promoted worker's new
// manager (desired role manager) before its role turns. A demotion writes
// the role before it takes the Raft vote away: callers admit a demoted
// manager that still votes, so that the demotion can finish.
func Demotion(tx store.ReadTx, id ca.Identity) error {
	if id.Role != ca.RoleManager && id.Role != ca.RoleClient {
		return nil
	}
	node := Owner(id)
	n := tx.GetNode(node)
	if n == nil || n.GetRole() == pb.NodeSpec_ROLE_MANAGER || n.GetSpec().GetDesiredRole() == pb.NodeSpec_ROLE_MANAGER {
		return nil
	}
	if id.Role == ca.RoleClient {
		return status.Errorf(codes.PermissionDenied, "this client certificate was issued by manager %s, which was demoted to a worker: use the client bundle of a current manager (its DATA_DIR/client, BERTH_TLS_DIR)", node)
	}
	return status.Errorf(codes.PermissionDenied, "node %s was demoted to a worker: its manager certificate no longer admits it as a manager", node)
}
