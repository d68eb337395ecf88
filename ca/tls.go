package ca

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
)

// Credentials hold a node's certificate and the root it trusts, and let the
// certificate be swapped on renewal without restarting servers or clients.
type Credentials struct {
	mu   sync.RWMutex
	cert *tls.Certificate
	pool *x509.CertPool
	id   Identity
}

// NewCredentials loads a PEM certificate and key signed by rootPEM.
func NewCredentials(rootPEM, certPEM, keyPEM []byte) (*Credentials, error) {
	c := &Credentials{}
	if err := c.Replace(rootPEM, certPEM, keyPEM); err != nil {
		return nil, err
	}
	return c, nil
}

// Replace swaps in a renewed certificate (and root).
func (c *Credentials) Replace(rootPEM, certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	pair.Leaf = leaf
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		return fmt.Errorf("load CA certificate: no certificate in PEM")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("certificate is not signed by this cluster's CA: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cert, c.pool, c.id = &pair, pool, id
	c.mu.Unlock()
	return nil
}

// Identity is this node's identity.
func (c *Credentials) Identity() Identity {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.id
}

// Leaf is the current certificate.
func (c *Credentials) Leaf() *x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert.Leaf
}

func (c *Credentials) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, c.pool
}

// ServerConfig is the TLS configuration of a manager's listener. Clients may
// connect without a certificate (to join with a token); which RPCs need one
// is decided per call by the server, using the verified peer identity.
func (c *Credentials) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   tls.VerifyClientCertIfGiven,
			}, nil
		},
	}
}

// ClientConfig is the TLS configuration for dialing managers: it presents
// this node's certificate and accepts only managers of the same cluster.
func (c *Credentials) ClientConfig() *tls.Config {
	_, pool := c.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: ManagerServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
	}
}

// PinnedConfig is the TLS configuration a joining node uses before it has a
// certificate: it trusts only a CA whose certificate hash is caHash.
func PinnedConfig(rootPEM []byte, caHash string) (*tls.Config, error) {
	if got := CertHash(rootPEM); got != caHash {
		return nil, fmt.Errorf("the manager's CA (hash %.12s…) is not the one the join token pins (%.12s…): wrong cluster or a man in the middle", got, caHash)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: ManagerServerName}, nil
}
