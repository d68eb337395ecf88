package manager

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"berth/ca"
	"berth/manager/admit"
)

// bundleCheckEvery is how often a manager checks its client bundle's age.
const bundleCheckEvery = time.Hour

// keepClientBundle keeps the CLI's bundle fresh on a manager that runs
// for months: it is rewritten once it enters the last third of its life.
func (m *Manager) keepClientBundle(ctx context.Context) error {
	t := time.NewTicker(bundleCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.writeClientBundle(ctx); err != nil {
				m.log.Warn("renew the client bundle", "err", err)
			}
		}
	}
}

// writeClientBundle writes DATA_DIR/client: a client certificate the CLI
// uses on this host, and the address of this manager.
func (m *Manager) writeClientBundle(ctx context.Context) error {
	root, err := m.ca.Root()
	if err != nil {
		return err
	}
	// The address may have changed even when the bundle stays.
	if err := ca.WriteFileAtomic(filepath.Join(m.path(clientDir), "manager-addr"), []byte(m.advertise+"\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var dirs []string
	if !m.bundleCurrent(m.path(clientDir), root.CertPEM) {
		dirs = append(dirs, m.path(clientDir))
	}
	if d := m.cfg.InstallClientBundle; d != "" {
		if install, err := m.installInto(ctx, d, root.CertPEM); err != nil {
			return err
		} else if install {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil // nothing to write: no certificate to issue
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return err
	}
	cert, _, err := m.ca.Issue(csrPEM, admit.ClientID(m.nodeID), ca.RoleClient)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := ca.Dir(d).Save(root.CertPEM, cert, keyPEM); err != nil {
			return err
		}
		if err := ca.WriteFileAtomic(filepath.Join(d, "manager-addr"), []byte(m.advertise+"\n"), 0o644); err != nil {
			return err
		}
	}
	m.log.Info("client bundle written", "dirs", dirs)
	return nil
}

// bundleCurrent says whether dir holds a client bundle of this cluster's
// CA that is good for at least another third of its life. A restarted
// manager keeps such a bundle rather than rewriting it under a CLI that
// may be reading it (a reader between the cert and the key of a rewrite
// would see a mismatched pair).
func (m *Manager) bundleCurrent(dir string, rootPEM []byte) bool {
	root, certPEM, keyPEM, err := ca.Dir(dir).Read()
	if err != nil || !bytes.Equal(root, rootPEM) {
		return false
	}
	creds, err := ca.NewCredentials(root, certPEM, keyPEM)
	if err != nil {
		return false
	}
	leaf := creds.Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return m.cfg.Now().Before(leaf.NotAfter.Add(-life / 3))
}
