package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
)

// rpcTimeout bounds one unary call to a manager.
const rpcTimeout = 10 * time.Second

// ErrJoinRefused is returned by Run when the cluster refuses this node: a
// malformed, wrong or rotated join token, or a manager whose CA is not the
// one the token pins. Retrying will not help; the error says what to fix.
var ErrJoinRefused = errors.New("join refused")

// identity loads the node's identity from DATA_DIR/certs, or joins the
// cluster with the join token to get one.
func (a *Agent) identity(ctx context.Context) (*ca.Credentials, error) {
	dir := ca.Dir(filepath.Join(a.cfg.DataDir, "certs"))
	if dir.Exists() {
		creds, err := dir.Load()
		if err != nil {
			return nil, fmt.Errorf("load node identity from %s: %w", dir, err)
		}
		return creds, nil
	}
	if a.cfg.Token == "" {
		return nil, fmt.Errorf("%w: no node identity in %s and no join token: give --token (from `berth cluster join-token worker`)", ErrJoinRefused, dir)
	}
	tok, err := ca.ParseToken(a.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: --token: %w", ErrJoinRefused, err)
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return nil, fmt.Errorf("make node key: %w", err)
	}
	root, cert, err := a.join(ctx, tok, csrPEM)
	if err != nil {
		return nil, err
	}
	if err := dir.Save(root, cert, keyPEM); err != nil {
		return nil, fmt.Errorf("save node identity: %w", err)
	}
	return ca.NewCredentials(root, cert, keyPEM)
}

// join asks the --join managers in turn for a certificate until one
// issues it, retrying with backoff while none can be reached; a refusal
// ends it at once.
func (a *Agent) join(ctx context.Context, tok ca.Token, csrPEM []byte) (root, cert []byte, err error) {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for {
		for _, addr := range a.cfg.Join {
			root, cert, err = a.joinVia(ctx, addr, tok, csrPEM)
			if err == nil || errors.Is(err, ErrJoinRefused) {
				return root, cert, err
			}
			a.log.Warn("cannot join through this manager; trying the next", "manager", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("join the cluster: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(b.next()):
		}
	}
}

// joinVia fetches the cluster CA from addr without trusting it, checks it
// against the token's pin, then, trusting only that CA, has it sign csrPEM.
func (a *Agent) joinVia(ctx context.Context, addr string, tok ca.Token, csrPEM []byte) (root, cert []byte, err error) {
	unverified := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: ca.ManagerServerName, InsecureSkipVerify: true}
	root, err = rootCA(ctx, addr, unverified)
	if err != nil {
		return nil, nil, err
	}
	pinned, err := ca.PinnedConfig(root, tok.CAHash)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: manager %s: %w", ErrJoinRefused, addr, err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pinned)))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := pb.NewNodeCAClient(conn).IssueNodeCertificate(cctx, &pb.IssueNodeCertificateRequest{Csr: csrPEM, Token: tok.String(), DesiredRole: pb.NodeSpec_ROLE_WORKER.Enum()})
	if err != nil {
		return nil, nil, refusal(addr, err)
	}
	a.log.Info("joined the cluster", "node", resp.GetNodeId(), "role", resp.GetRole(), "manager", addr)
	return root, resp.GetCertificate(), nil
}

// rootCA asks the manager at addr for the cluster's CA certificate.
func rootCA(ctx context.Context, addr string, cfg *tls.Config) ([]byte, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := pb.NewNodeCAClient(conn).GetRootCACertificate(ctx, &pb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, fmt.Errorf("get the CA certificate from %s: %w", addr, err)
	}
	return resp.GetCertificate(), nil
}

// refusal turns a manager's answer to a join into ErrJoinRefused when it
// is final, keeping the manager's own words.
func refusal(addr string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated:
		return fmt.Errorf("%w by manager %s: %s", ErrJoinRefused, addr, st.Message())
	}
	return fmt.Errorf("join through %s: %w", addr, err)
}

// renewCert is the certificate renewer's IssueFunc: the current manager
// signs a new CSR for the node it sees in the caller's certificate.
func (a *Agent) renewCert(ctx context.Context, csrPEM []byte) (certPEM, rootPEM []byte, err error) {
	addr := a.peers.current()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.creds.ClientConfig())))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	client := pb.NewNodeCAClient(conn)
	resp, err := client.IssueNodeCertificate(cctx, &pb.IssueNodeCertificateRequest{Csr: csrPEM, NodeId: a.creds.Identity().NodeID})
	if err != nil {
		return nil, nil, fmt.Errorf("renew certificate through %s: %w", addr, err)
	}
	root, err := client.GetRootCACertificate(cctx, &pb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("get the CA certificate from %s: %w", addr, err)
	}
	return resp.GetCertificate(), root.GetCertificate(), nil
}
