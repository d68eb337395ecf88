package manager

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"berth/ca"
)

// Adopted is the identity a node that becomes a manager in place (a
// promoted berth-agent) brings to its manager: a manager certificate for
// its own node ID and the cluster key, both from NodeCA.
type Adopted struct {
	RootPEM, CertPEM, KeyPEM []byte
	ClusterKey               []byte
	// Join are the managers to ask to add this one to Raft.
	Join []string
}

// AdoptIdentity writes id into dataDir as a joining manager's identity, so
// that a Manager run on dataDir (with no Join or Token) loads it and joins
// Raft through id.Join as a voter, keeping the node's ID. dataDir must not
// hold an identity yet.
func AdoptIdentity(dataDir string, id Adopted) error {
	creds, err := ca.NewCredentials(id.RootPEM, id.CertPEM, id.KeyPEM)
	if err != nil {
		return fmt.Errorf("adopt identity: %w", err)
	}
	if r := creds.Identity().Role; r != ca.RoleManager {
		return fmt.Errorf("adopt identity: the certificate is for a %s, not a manager", r)
	}
	if len(id.ClusterKey) == 0 {
		return errors.New("adopt identity: no cluster key (NodeCA gives it with a manager certificate)")
	}
	if len(id.Join) == 0 {
		return errors.New("adopt identity: no manager to join Raft through")
	}
	m := &Manager{cfg: Config{DataDir: dataDir}}
	dir := ca.Dir(m.path(certsDir))
	if dir.Exists() {
		return fmt.Errorf("adopt identity: %s holds an identity already", dataDir)
	}
	if err := os.MkdirAll(m.path("keys"), 0o700); err != nil {
		return err
	}
	// As in join: the Raft join list first and the certificates last, so
	// an identity that loads is complete and its Raft join is recorded.
	if err := ca.WriteFileAtomic(m.path(raftJoinFile), []byte(strings.Join(id.Join, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := ca.WriteFileAtomic(m.path(clusterKeyFile), id.ClusterKey, 0o600); err != nil {
		return err
	}
	return dir.Save(id.RootPEM, id.CertPEM, id.KeyPEM)
}
