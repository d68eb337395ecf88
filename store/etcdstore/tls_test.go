package etcdstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
)

// tlsFiles are a CA and the server's and a client's certificates.
type tlsFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// newTLSFiles writes a CA signing a server certificate for 127.0.0.1
// and a client certificate, into dir.
func newTLSFiles(t *testing.T, dir string) *tlsFiles {
	t.Helper()
	caKey, caCert, caDER := newCA(t, "berth-test-etcd-ca")
	f := &tlsFiles{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, f.ca, "CERTIFICATE", caDER)
	f.serverCert, f.serverKey = issue(t, dir, "server", caKey, caCert, x509.ExtKeyUsageServerAuth)
	f.clientCert, f.clientKey = issue(t, dir, "client", caKey, caCert, x509.ExtKeyUsageClientAuth)
	return f
}

func newCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func issue(t *testing.T, dir, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// awaitTLS waits until the TLS server answers a client with the right
// certificates.
func (e *etcdProc) awaitTLS() {
	e.t.Helper()
	await.NoError(e.t, settle, func() error {
		cli, err := Dial(context.Background(), DialConfig{Endpoints: []string{e.endpoint()}, CACert: e.tls.ca, Cert: e.tls.clientCert, Key: e.tls.clientKey, Timeout: time.Second})
		if err == nil {
			cli.Close()
		}
		return err
	}, "etcd answers over TLS")
}

// TestDialChecksCertificates: with the right CA and client certificate
// a manager reaches a TLS etcd; a wrong CA, a missing client certificate
// or half a key pair is a clear error at start, naming the flags.
func TestDialChecksCertificates(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd is not installed: `make deps` installs Debian's etcd-server")
	}
	dir := t.TempDir()
	e := &etcdProc{t: t, dir: dir, client: freePort(t), peer: freePort(t), tls: newTLSFiles(t, dir)}
	e.run()
	good := DialConfig{Endpoints: []string{e.endpoint()}, CACert: e.tls.ca, Cert: e.tls.clientCert, Key: e.tls.clientKey, Timeout: 2 * time.Second}
	cli, err := Dial(t.Context(), good)
	if err != nil {
		t.Fatalf("the right certificates: %v", err)
	}
	cli.Close()

	other := newTLSFiles(t, t.TempDir())
	wrongCA, noClient, halfPair := good, good, good
	wrongCA.CACert = other.ca
	noClient.Cert, noClient.Key = "", ""
	halfPair.Key = ""
	for name, tc := range map[string]struct {
		cfg  DialConfig
		want string
	}{
		"wrong CA":       {wrongCA, "etcd unreachable at " + e.endpoint()},
		"no client cert": {noClient, "etcd unreachable at " + e.endpoint()},
		"half a pair":    {halfPair, "--etcd-cert and --etcd-key go together"},
	} {
		_, err := Dial(t.Context(), tc.cfg)
		t.Logf("%s: %v", name, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
			continue
		}
		if name != "half a pair" && !strings.Contains(err.Error(), "check --etcd-cacert, --etcd-cert and --etcd-key") {
			t.Errorf("%s: %v, want it to name the certificate flags", name, err)
		}
	}
}
