package manager

import (
	"context"

	"berth/ca"
	"berth/manager/nodeca"
)

// newCA is Run's third step: the cluster's certificate authority as this
// manager serves it (NodeCA). It signs the certificates of joining and
// renewing nodes, this manager's own and the CLI's, with the CA key the
// Cluster object keeps sealed under the cluster key.
func (m *Manager) newCA() *nodeca.Server {
	return nodeca.New(nodeca.Config{
		Store: m.be.Store(), ClusterID: m.clusterID, ClusterKey: m.id.clusterKey,
		CertLifetime: m.cfg.CertLifetime, Now: m.cfg.Now, Log: m.log,
	})
}

// newToken makes a join token that pins this cluster's CA.
func (m *Manager) newToken() (string, error) {
	tok, err := ca.NewToken(ca.CertHash(m.rootPEM()))
	return tok.String(), err
}

// renewer renews this manager's certificate before it expires; this
// manager signs it itself.
func (m *Manager) renewer() *ca.Renewer {
	return &ca.Renewer{
		Creds: m.id.creds, Dir: ca.Dir(m.path(certsDir)), Log: m.log, Now: m.cfg.Now,
		Issue: func(ctx context.Context, csrPEM []byte) ([]byte, []byte, error) {
			return m.ca.Issue(csrPEM, m.nodeID, ca.RoleManager)
		},
	}
}
