package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DialConfig says how to reach etcd: berth-manager's --etcd-* flags.
type DialConfig struct {
	Endpoints []string
	// CACert verifies etcd's certificate; Cert and Key are this manager's
	// client certificate. All empty: plain connections.
	CACert, Cert, Key string
	// Timeout bounds the first contact; DefaultRequestTimeout when zero.
	Timeout time.Duration
}

// Dial connects to etcd and makes sure it answers, so that a wrong
// endpoint or certificate is a clear error at start rather than writes
// that hang later.
func Dial(ctx context.Context, cfg DialConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("--etcd-endpoints is empty: give etcd's client URLs, such as https://10.0.0.1:2379")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRequestTimeout
	}
	tlsCfg, err := cfg.tls()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, TLS: tlsCfg, DialTimeout: cfg.Timeout, Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("--etcd-endpoints %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, err := cli.Get(rctx, "/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		hint := ""
		if tlsCfg != nil || strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "x509") {
			hint = " (check --etcd-cacert, --etcd-cert and --etcd-key)"
		}
		return nil, fmt.Errorf("etcd unreachable at %s: %w%s", strings.Join(cfg.Endpoints, ","), err, hint)
	}
	return cli, nil
}

// tls is the client's TLS configuration, nil for plain connections.
func (c DialConfig) tls() (*tls.Config, error) {
	if c.CACert == "" && c.Cert == "" && c.Key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert %s: no PEM certificate in it", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together: give both or neither")
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
