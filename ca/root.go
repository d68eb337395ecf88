package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Roles a certificate grants, carried in the subject's OrganizationalUnit.
const (
	RoleManager = "berth-manager"
	RoleWorker  = "berth-worker"
	// RoleClient is the CLI's identity; it may call the Control API only.
	RoleClient = "berth-client"
)

// ManagerServerName is the TLS server name every manager certificate holds,
// so a node can dial any manager by address and still verify it.
const ManagerServerName = "manager.berth"

// rootLifetime is how long a root CA is valid.
const rootLifetime = 20 * 365 * 24 * time.Hour

// Root is a cluster's certificate authority.
type Root struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	// ClusterID is written into every issued certificate's Organization.
	ClusterID string
}

// NewRoot makes a new self-signed root CA for the cluster clusterID.
func NewRoot(clusterID string, now time.Time) (*Root, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "berth-root-ca", Organization: []string{clusterID}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Root{Cert: cert, CertPEM: encodePEM("CERTIFICATE", der), key: key, ClusterID: clusterID}, nil
}

// ParseRoot loads a root CA from its PEM certificate and PEM key.
func ParseRoot(certPEM, keyPEM []byte) (*Root, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	clusterID := ""
	if len(cert.Subject.Organization) > 0 {
		clusterID = cert.Subject.Organization[0]
	}
	return &Root{Cert: cert, CertPEM: certPEM, key: key, ClusterID: clusterID}, nil
}

// KeyPEM returns the CA's private key in PEM form; seal it before storing.
func (r *Root) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(r.key)
	if err != nil {
		return nil, err
	}
	return encodePEM("PRIVATE KEY", der), nil
}

// Hash is the hex SHA-256 of the CA certificate, pinned in join tokens.
func (r *Root) Hash() string { return CertHash(r.CertPEM) }

// CertHash is the hex SHA-256 of a PEM certificate's DER bytes ("" if unparsable).
func CertHash(certPEM []byte) string {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return ""
	}
	return hashDER(block.Bytes)
}

func hashDER(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Pool is a certificate pool holding just this root.
func (r *Root) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.Cert)
	return p
}

// IssueRequest says what certificate to issue.
type IssueRequest struct {
	// CSRPEM is the node's certificate signing request.
	CSRPEM   []byte
	NodeID   string
	Role     string
	Lifetime time.Duration
	// IPs and DNSNames are extra subject alternative names (a manager's addresses).
	IPs      []net.IP
	DNSNames []string
}

// Issue signs a CSR, giving the certificate the node ID (CommonName), role
// (OrganizationalUnit) and cluster ID (Organization) of the request, whatever
// the CSR itself asked for.
func (r *Root) Issue(req IssueRequest, now time.Time) ([]byte, error) {
	block, _ := pem.Decode(req.CSRPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	switch req.Role {
	case RoleManager, RoleWorker, RoleClient:
	default:
		return nil, fmt.Errorf("role %q: want %s, %s or %s", req.Role, RoleManager, RoleWorker, RoleClient)
	}
	if req.NodeID == "" {
		return nil, errors.New("node ID is empty")
	}
	if req.Lifetime <= 0 {
		return nil, fmt.Errorf("certificate lifetime %s must be positive", req.Lifetime)
	}
	dns := append([]string{req.NodeID}, req.DNSNames...)
	if req.Role == RoleManager {
		dns = append(dns, ManagerServerName)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			CommonName:         req.NodeID,
			OrganizationalUnit: []string{req.Role},
			Organization:       []string{r.ClusterID},
		},
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(req.Lifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dns,
		IPAddresses: req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, csr.PublicKey, r.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", req.NodeID, err)
	}
	return encodePEM("CERTIFICATE", der), nil
}

// NewKeyAndCSR makes a node's private key and a CSR for it.
func NewKeyAndCSR() (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "berth-node"},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create csr: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodePEM("PRIVATE KEY", keyDER), encodePEM("CERTIFICATE REQUEST", csrDER), nil
}

// ParseCertificate decodes the first certificate of a PEM bundle.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("not a PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}
