package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Credentials hold a node's certificate and the root it trusts, and let the
// certificate be swapped on renewal without restarting servers or clients.
type Credentials struct {
	mu   sync.RWMutex
	cert *tls.Certificate
	pool *x509.CertPool
	id   Identity
	// caHash is the hash of the CA that signed cert (CertHash).
	caHash string
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
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("certificate is not signed by this cluster's CA: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return err
	}
	// The chain goes out with the CA, so that a manager of another
	// cluster refusing this certificate can say which CA issued it.
	issuers := chains[0][1:]
	for _, ic := range issuers {
		pair.Certificate = append(pair.Certificate, ic.Raw)
	}
	c.mu.Lock()
	c.cert, c.pool, c.id = &pair, pool, id
	c.caHash = hashDER(chains[0][len(chains[0])-1].Raw)
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

// CAHash is the hash of this cluster's CA certificate, as join tokens pin it.
func (c *Credentials) CAHash() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.caHash
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

// DeferredServerConfig is ServerConfig for a server that explains refusals
// in its own protocol: it asks for a client certificate but does not
// verify it, so the handshake completes with a certificate of another
// cluster, an expired one, or none. The client still proves it holds the
// certificate's key. The caller MUST pass ConnectionState().PeerCertificates
// through VerifyClient before trusting them: VerifiedChains stays empty.
func (c *Credentials) DeferredServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, _ := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequestClientCert,
			}, nil
		},
	}
}

// ErrForeignCertificate is returned by VerifyClient for a certificate
// another cluster's CA issued.
var ErrForeignCertificate = errors.New("certificate is not from this cluster")

// VerifyClient verifies a client's certificates, leaf first as TLS presents
// them, against this cluster's CA, as a TLS server requiring client
// certificates would, and returns the verified chains. Its errors say what
// is wrong in the words of the person holding the certificate.
func (c *Credentials) VerifyClient(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("no client certificate")
	}
	_, pool := c.current()
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err == nil {
		return chains, nil
	}
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return nil, fmt.Errorf("%w (issued by %s; this cluster's CA is %.12s…): use this cluster's client bundle", ErrForeignCertificate, issuerOf(certs), c.CAHash())
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return nil, fmt.Errorf("certificate %q is valid from %s to %s, not now: a node renews its certificate before it expires; for the CLI use a current client bundle",
			leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil, fmt.Errorf("certificate %q refused: %w", leaf.Subject.CommonName, err)
}

// issuerOf names the CA that issued certs[0]: by its hash when the client
// sent it along, else by the cluster named in the certificate.
func issuerOf(certs []*x509.Certificate) string {
	for _, ic := range certs[1:] {
		if certs[0].CheckSignatureFrom(ic) == nil {
			return fmt.Sprintf("CA %.12s…", hashDER(ic.Raw))
		}
	}
	if org := certs[0].Issuer.Organization; len(org) == 1 {
		return fmt.Sprintf("the CA of cluster %s", org[0])
	}
	return fmt.Sprintf("an unknown CA (%s)", certs[0].Issuer)
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
