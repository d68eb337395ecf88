// Package nodeca serves the NodeCA API: it hands out the cluster's CA
// certificate and signs node certificates — for new nodes that present a
// join token, and for members renewing with their current certificate. A
// new node gets its Node object here, so its identity and its place in the
// store are born together.
package nodeca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/internal/ids"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// DefaultCertLifetime is a node certificate's life when the cluster sets none.
const DefaultCertLifetime = 90 * 24 * time.Hour

// Config assembles a Server.
type Config struct {
	Store     *store.MemoryStore
	ClusterID string
	// ClusterKey decrypts the CA key kept in the replicated state.
	ClusterKey []byte
	// CertLifetime is a certificate's life while the cluster spec sets no
	// cert_expiry; DefaultCertLifetime when zero.
	CertLifetime time.Duration
	Now          func() time.Time
	Log          *slog.Logger
}

// Server implements pb.NodeCAServer.
type Server struct {
	pb.UnimplementedNodeCAServer
	cfg Config

	mu   sync.Mutex
	root *ca.Root // parsed CA, cached by certificate hash
}

// New returns a NodeCA server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}
}

func (s *Server) cluster() (*pb.Cluster, error) {
	var c *pb.Cluster
	s.cfg.Store.View(func(tx store.ReadTx) { c = tx.GetCluster(s.cfg.ClusterID) })
	if c == nil || c.GetRootCa() == nil {
		return nil, status.Error(codes.Unavailable, "this manager has not received the cluster state yet; try another manager or again shortly")
	}
	return c, nil
}

// Root returns the cluster CA with its key, decrypted with the cluster key.
func (s *Server) Root() (*ca.Root, error) {
	c, err := s.cluster()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root != nil && s.root.Hash() == c.GetRootCa().GetCaCertHash() {
		return s.root, nil
	}
	keyPEM, err := ca.Open(s.cfg.ClusterKey, c.GetRootCa().GetCaKey())
	if err != nil {
		return nil, fmt.Errorf("open the CA key: %w", err)
	}
	root, err := ca.ParseRoot(c.GetRootCa().GetCaCert(), keyPEM)
	if err != nil {
		return nil, err
	}
	s.root = root
	return root, nil
}

// Issue signs csrPEM for nodeID in role, for the manager's own use (its
// certificate's renewal, the CLI's bundle), and returns the certificate
// with the CA's.
func (s *Server) Issue(csrPEM []byte, nodeID, role string) (certPEM, rootPEM []byte, err error) {
	c, err := s.cluster()
	if err != nil {
		return nil, nil, err
	}
	root, err := s.Root()
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = root.Issue(ca.IssueRequest{CSRPEM: csrPEM, NodeID: nodeID, Role: role, Lifetime: s.lifetime(c)}, s.cfg.Now())
	return certPEM, root.CertPEM, err
}

// lifetime is the life of the certificates c's CA signs now.
func (s *Server) lifetime(c *pb.Cluster) time.Duration {
	if d := c.GetSpec().GetCertExpiry(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	if s.cfg.CertLifetime > 0 {
		return s.cfg.CertLifetime
	}
	return DefaultCertLifetime
}

// GetRootCACertificate returns the CA certificate; joiners check its hash.
func (s *Server) GetRootCACertificate(context.Context, *pb.GetRootCACertificateRequest) (*pb.GetRootCACertificateResponse, error) {
	c, err := s.cluster()
	if err != nil {
		return nil, err
	}
	return &pb.GetRootCACertificateResponse{Certificate: c.GetRootCa().GetCaCert()}, nil
}

// IssueNodeCertificate signs a CSR for a joining node (with a join token)
// or for a member renewing its certificate (without one). A joining node's
// Node is recorded only once everything that could refuse it has passed,
// so a refused join leaves nothing behind.
func (s *Server) IssueNodeCertificate(ctx context.Context, req *pb.IssueNodeCertificateRequest) (*pb.IssueNodeCertificateResponse, error) {
	c, err := s.cluster()
	if err != nil {
		return nil, err
	}
	joining := req.GetToken() != ""
	var nodeID string
	var role pb.NodeSpec_Role
	if joining {
		if role, err = s.admit(c, req.GetToken()); err != nil {
			return nil, err
		}
		if err := checkDesiredRole(role, req.DesiredRole); err != nil {
			return nil, err
		}
		nodeID = ids.New()
	} else {
		if nodeID, role, err = s.renewer(ctx, req.DesiredRole); err != nil {
			return nil, err
		}
	}
	root, err := s.Root()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	certPEM, err := root.Issue(ca.IssueRequest{CSRPEM: req.GetCsr(), NodeID: nodeID, Role: roleName(role), Lifetime: s.lifetime(c)}, s.cfg.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if joining {
		if err := s.createNode(ctx, nodeID, role); err != nil {
			return nil, err
		}
	}
	resp := &pb.IssueNodeCertificateResponse{NodeId: nodeID, Role: role, Certificate: certPEM}
	if role == pb.NodeSpec_ROLE_MANAGER {
		resp.ClusterKey = s.cfg.ClusterKey
	}
	s.cfg.Log.Info("issued node certificate", "node", nodeID, "role", roleName(role), "renewal", !joining)
	return resp, nil
}

// checkDesiredRole refuses a join whose token grants another role than the
// one the node asked for; nodes that ask for none take the token's role.
func checkDesiredRole(granted pb.NodeSpec_Role, desired *pb.NodeSpec_Role) error {
	if desired == nil || *desired == granted {
		return nil
	}
	if granted == pb.NodeSpec_ROLE_WORKER {
		return status.Error(codes.PermissionDenied, "this is a worker join token; a manager joins with the token from `berth cluster join-token manager`")
	}
	return status.Error(codes.PermissionDenied, "this is a manager join token; a worker (berth-agent) joins with the token from `berth cluster join-token worker`")
}

// admit checks a join token and returns the role it grants.
func (s *Server) admit(c *pb.Cluster, token string) (pb.NodeSpec_Role, error) {
	tok, err := ca.ParseToken(token)
	if err != nil {
		return 0, status.Error(codes.InvalidArgument, err.Error())
	}
	if tok.CAHash != c.GetRootCa().GetCaCertHash() {
		return 0, status.Error(codes.PermissionDenied, "the join token is for another cluster (its CA hash differs)")
	}
	for _, cand := range []struct {
		token string
		role  pb.NodeSpec_Role
	}{{c.GetJoinTokens().GetWorker(), pb.NodeSpec_ROLE_WORKER}, {c.GetJoinTokens().GetManager(), pb.NodeSpec_ROLE_MANAGER}} {
		if want, err := ca.ParseToken(cand.token); err == nil && want.Matches(tok) {
			return cand.role, nil
		}
	}
	return 0, status.Error(codes.PermissionDenied, "join token rejected: it is wrong or was rotated; get the current one with `berth cluster join-token worker|manager`")
}

// renewer identifies a member renewing with its current certificate and
// returns the role its new certificate carries: the node's current role,
// or manager for a node promoted (spec.desired_role manager) that asks for
// it, so that a worker's agent can start a manager in place.
func (s *Server) renewer(ctx context.Context, desired *pb.NodeSpec_Role) (string, pb.NodeSpec_Role, error) {
	id, ok := mux.PeerIdentity(ctx)
	if !ok || id.ClusterID != s.cfg.ClusterID {
		return "", 0, status.Error(codes.Unauthenticated, "no join token and no certificate of this cluster: give a join token (--token)")
	}
	var n *pb.Node
	s.cfg.Store.View(func(tx store.ReadTx) { n = tx.GetNode(id.NodeID) })
	if n == nil {
		return "", 0, status.Errorf(codes.PermissionDenied, "node %s was removed from the cluster; join again with a token", id.NodeID)
	}
	if desired != nil && *desired == pb.NodeSpec_ROLE_MANAGER && n.GetRole() != pb.NodeSpec_ROLE_MANAGER {
		if n.GetSpec().GetDesiredRole() != pb.NodeSpec_ROLE_MANAGER {
			return "", 0, status.Errorf(codes.PermissionDenied, "node %s is a worker and was not promoted: run `berth node promote %s` first", id.NodeID, id.NodeID)
		}
		return id.NodeID, pb.NodeSpec_ROLE_MANAGER, nil
	}
	return id.NodeID, n.GetRole(), nil
}

// ManagerAvailability is the availability a new node starts with: a
// berth-manager runs no containers (an agent on its host joins as a node
// of its own), so a manager's node is drained and no task is placed on it.
func ManagerAvailability(role pb.NodeSpec_Role) pb.NodeSpec_Availability {
	if role == pb.NodeSpec_ROLE_MANAGER {
		return pb.NodeSpec_AVAILABILITY_DRAIN
	}
	return pb.NodeSpec_AVAILABILITY_ACTIVE
}

func (s *Server) createNode(ctx context.Context, id string, role pb.NodeSpec_Role) error {
	now := timestamppb.New(s.cfg.Now())
	n := &pb.Node{
		Id:     id,
		Role:   role,
		Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{}, DesiredRole: role, Availability: ManagerAvailability(role)},
		Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_UNKNOWN, Message: "joined; no session yet", ChangedAt: now},
	}
	// A write whose outcome is unknown (leadership lost while committing)
	// is made again: the ID is fresh, so "exists" on a retry means the
	// first one landed. The joiner keeps its certificate either way.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = s.cfg.Store.Update(ctx, func(tx store.Tx) error { return tx.CreateNode(n) })
		if attempt > 0 && errors.Is(err, store.ErrExist) {
			return nil
		}
		if !errors.Is(err, store.ErrOutcomeUnknown) {
			break
		}
	}
	if errors.Is(err, store.ErrNotLeader) || errors.Is(err, store.ErrOutcomeUnknown) {
		return status.Errorf(codes.Unavailable, "record node %s: %v", id, err)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "record node %s: %v", id, err)
	}
	return nil
}

func roleName(r pb.NodeSpec_Role) string {
	if r == pb.NodeSpec_ROLE_MANAGER {
		return ca.RoleManager
	}
	return ca.RoleWorker
}
