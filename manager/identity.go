package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/internal/hostaddr"
	pb "berth/proto/berth/v1"
)

// Files of a manager's data dir.
const (
	certsDir       = "certs"
	raftDir        = "raft"
	clientDir      = "client"
	clusterKeyFile = "keys/cluster.key"
	// sealedCAKeyFile keeps the bootstrap CA key (sealed) until the Cluster
	// object that carries it is written.
	sealedCAKeyFile = "keys/ca.key.sealed"
	// raftJoinFile lists, one a line, the managers a joining manager asks
	// to add it to Raft. It is written before the joiner's identity and
	// removed once Raft has added it (or at the next start, when Raft holds
	// state), so a manager stopped in between (crash, reboot) joins Raft on
	// its next start instead of serving as a member of nothing.
	raftJoinFile = "raft-join"
)

// identity is what a manager knows itself by.
type identity struct {
	creds      *ca.Credentials
	clusterKey []byte
	// bootstrapped is true when this run created the cluster.
	bootstrapped bool
	// joined is true when this run must join Raft: it joined an existing
	// cluster, or an earlier run did and stopped before Raft added it
	// (mustJoinRaft).
	joined bool
}

func (m *Manager) path(p string) string { return filepath.Join(m.cfg.DataDir, p) }

// loadIdentity is Run's first step: this manager's identity, and the
// cluster and node IDs its certificate names.
func (m *Manager) loadIdentity(ctx context.Context) error {
	id, err := m.loadOrCreateIdentity(ctx)
	if err != nil {
		return err
	}
	m.id = id
	ident := id.creds.Identity()
	m.clusterID, m.nodeID = ident.ClusterID, ident.NodeID
	return nil
}

// loadOrCreateIdentity loads the identity in the data dir, or makes a new
// cluster (no --join), or joins the cluster at --join with the token.
func (m *Manager) loadOrCreateIdentity(ctx context.Context) (*identity, error) {
	dir := ca.Dir(m.path(certsDir))
	if dir.Exists() {
		creds, err := dir.Load()
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(m.path(clusterKeyFile))
		if err != nil {
			return nil, fmt.Errorf("cluster key: %w (the data dir %s is incomplete)", err, m.cfg.DataDir)
		}
		if len(m.cfg.Join) > 0 {
			m.log.Info("data dir holds an identity already; --join is used only to finish a Raft join an earlier run left undone", "node", creds.Identity().NodeID)
		}
		return &identity{creds: creds, clusterKey: key}, nil
	}
	if err := os.MkdirAll(m.path("keys"), 0o700); err != nil {
		return nil, err
	}
	if len(m.cfg.Join) > 0 {
		return m.join(ctx)
	}
	if m.cfg.ForceNewCluster {
		return nil, fmt.Errorf("--force-new-cluster needs the data dir of a manager; %s holds none", m.cfg.DataDir)
	}
	return m.bootstrap()
}

// join gets a manager certificate from an existing cluster with a token.
func (m *Manager) join(ctx context.Context) (*identity, error) {
	tok, err := ca.ParseToken(m.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		id, err := m.joinOnce(ctx, tok)
		if err == nil {
			return id, nil
		}
		lastErr = err
		// A cluster electing a leader answers Unavailable: wait for it a
		// while (as a Raft election takes seconds at most); anything
		// else (a rejected token, an unreachable address) is final.
		if !errors.Is(err, errJoinUnavailable) || attempt >= joinAttempts-1 {
			return nil, lastErr
		}
		select {
		case <-ctx.Done():
			return nil, lastErr
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
}

// joinAttempts bounds the join's retries while the cluster has no leader
// (about 20 s in all with the growing pause between them).
const joinAttempts = 8

// errJoinUnavailable marks a join refused for now: the cluster could not
// record the node (no leader, or leadership lost while committing).
var errJoinUnavailable = errors.New("the cluster cannot take the join right now")

// joinOnce asks each --join address in turn for a manager certificate.
func (m *Manager) joinOnce(ctx context.Context, tok ca.Token) (*identity, error) {
	var lastErr error
	for _, addr := range m.cfg.Join {
		resp, rootPEM, err := requestCertificate(ctx, addr, tok, m.cfg.Token, pb.NodeSpec_ROLE_MANAGER)
		if err != nil {
			lastErr = fmt.Errorf("join via %s: %w", addr, err)
			m.log.Warn("join attempt failed", "manager", addr, "err", err)
			continue
		}
		if resp.GetRole() != pb.NodeSpec_ROLE_MANAGER {
			return nil, errors.New("--token is a worker token: a manager joins with the token from `berth cluster join-token manager`")
		}
		if err := ca.WriteFileAtomic(m.path(raftJoinFile), []byte(strings.Join(m.cfg.Join, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := ca.WriteFileAtomic(m.path(clusterKeyFile), resp.GetClusterKey(), 0o600); err != nil {
			return nil, err
		}
		dir := ca.Dir(m.path(certsDir))
		if err := dir.Save(rootPEM, resp.GetCertificate(), resp.keyPEM); err != nil {
			return nil, err
		}
		creds, err := dir.Load()
		if err != nil {
			return nil, err
		}
		m.log.Info("joined the cluster", "node", resp.GetNodeId(), "via", addr)
		return &identity{creds: creds, clusterKey: resp.GetClusterKey(), joined: true}, nil
	}
	return nil, lastErr
}

// issued is a certificate response with the key its CSR was made from.
type issued struct {
	*pb.IssueNodeCertificateResponse
	keyPEM []byte
}

// requestCertificate fetches the CA from addr, checks it against the
// token's pin, and asks for a certificate of role with the token. Agents
// join the same way.
func requestCertificate(ctx context.Context, addr string, tok ca.Token, token string, role pb.NodeSpec_Role) (*issued, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// The CA certificate is public; it is trusted only once its hash
	// matches the token's.
	probe, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
	if err != nil {
		return nil, nil, err
	}
	defer probe.Close()
	rootResp, err := pb.NewNodeCAClient(probe).GetRootCACertificate(ctx, &pb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, nil, errors.New(status.Convert(err).Message())
	}
	rootPEM := rootResp.GetCertificate()
	pinned, err := ca.PinnedConfig(rootPEM, tok.CAHash)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pinned)))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return nil, nil, err
	}
	resp, err := pb.NewNodeCAClient(conn).IssueNodeCertificate(ctx, &pb.IssueNodeCertificateRequest{Csr: csrPEM, Token: token, DesiredRole: role.Enum()})
	if err != nil {
		st := status.Convert(err)
		if st.Code() == codes.Unavailable {
			return nil, nil, fmt.Errorf("%w: %s", errJoinUnavailable, st.Message())
		}
		return nil, nil, errors.New(st.Message())
	}
	return &issued{IssueNodeCertificateResponse: resp, keyPEM: keyPEM}, rootPEM, nil
}

// advertiseAddr is where other nodes reach this manager.
func advertiseAddr(listen, advertise string) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(host)
	if ip != nil && !ip.IsUnspecified() {
		return listen, nil
	}
	a, err := hostaddr.Global4()
	if err != nil {
		return "", fmt.Errorf("--listen-addr %s does not name an address others can reach (%v): give --advertise-addr IP:PORT", listen, err)
	}
	return net.JoinHostPort(a.String(), port), nil
}

func (m *Manager) rootPEM() []byte {
	root, _, _, err := ca.Dir(m.path(certsDir)).Read()
	if err != nil {
		return nil
	}
	return root
}
