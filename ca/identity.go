package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// Identity is who a certificate says its holder is.
type Identity struct {
	NodeID    string
	Role      string
	ClusterID string
}

// IdentityOf reads the identity from a certificate the cluster CA issued.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, errors.New("no certificate")
	}
	if len(cert.Subject.OrganizationalUnit) != 1 || len(cert.Subject.Organization) != 1 {
		return Identity{}, fmt.Errorf("certificate %q carries no berth role or cluster", cert.Subject.CommonName)
	}
	id := Identity{NodeID: cert.Subject.CommonName, Role: cert.Subject.OrganizationalUnit[0], ClusterID: cert.Subject.Organization[0]}
	switch id.Role {
	case RoleManager, RoleWorker, RoleClient:
		return id, nil
	}
	return Identity{}, fmt.Errorf("certificate %q has unknown role %q", id.NodeID, id.Role)
}
