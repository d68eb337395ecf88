package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
)

// ErrNotPromoted is returned by ManagerCertificate when the cluster refuses
// a manager certificate: the node is not (or no longer) promoted.
var ErrNotPromoted = errors.New("node not promoted")

// ManagerIdentity is what a promoted node needs to run a manager under its
// own node ID: a manager certificate with its key, the cluster CA, the
// cluster key that opens the CA key and secrets, and the managers to join
// Raft through.
type ManagerIdentity struct {
	NodeID                   string
	RootPEM, CertPEM, KeyPEM []byte
	ClusterKey               []byte
	Managers                 []string
}

// ManagerCertificate asks the managers, over mTLS with the node's current
// certificate, for a manager certificate for this node. NodeCA issues one
// only while the node's desired role is manager (`berth node promote`);
// otherwise the error wraps ErrNotPromoted. Call it after Run has loaded
// the node's identity (OnDesiredRole's calls come after).
func (a *Agent) ManagerCertificate(ctx context.Context) (*ManagerIdentity, error) {
	if a.creds == nil {
		return nil, errors.New("agent: no node identity yet")
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return nil, fmt.Errorf("make manager key: %w", err)
	}
	managers := a.peers.list()
	var errs []error
	for _, addr := range managers {
		id, err := a.managerCertVia(ctx, addr, csrPEM)
		if err == nil {
			id.KeyPEM, id.Managers = keyPEM, managers
			return id, nil
		}
		if errors.Is(err, ErrNotPromoted) {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("get a manager certificate: %w", errors.Join(errs...))
}

// managerCertVia has the manager at addr sign csrPEM as a manager's.
func (a *Agent) managerCertVia(ctx context.Context, addr string, csrPEM []byte) (*ManagerIdentity, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.creds.ClientConfig())))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	client := pb.NewNodeCAClient(conn)
	nodeID := a.creds.Identity().NodeID
	resp, err := client.IssueNodeCertificate(cctx, &pb.IssueNodeCertificateRequest{
		Csr: csrPEM, NodeId: nodeID, DesiredRole: pb.NodeSpec_ROLE_MANAGER.Enum(),
	})
	if status.Code(err) == codes.PermissionDenied {
		return nil, fmt.Errorf("%w: manager %s: %s", ErrNotPromoted, addr, status.Convert(err).Message())
	}
	if err != nil {
		return nil, fmt.Errorf("manager certificate through %s: %w", addr, err)
	}
	if resp.GetRole() != pb.NodeSpec_ROLE_MANAGER || len(resp.GetClusterKey()) == 0 {
		return nil, fmt.Errorf("%w: manager %s issued a %v certificate", ErrNotPromoted, addr, resp.GetRole())
	}
	root, err := client.GetRootCACertificate(cctx, &pb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, fmt.Errorf("get the CA certificate from %s: %w", addr, err)
	}
	return &ManagerIdentity{NodeID: nodeID, RootPEM: root.GetCertificate(), CertPEM: resp.GetCertificate(), ClusterKey: resp.GetClusterKey()}, nil
}
