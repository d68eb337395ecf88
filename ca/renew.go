package ca

import (
	"context"
	"log/slog"
	"time"
)

// IssueFunc asks the cluster CA to sign a CSR and returns the certificate
// and the CA certificate (which may have changed), both PEM.
type IssueFunc func(ctx context.Context, csrPEM []byte) (certPEM, rootPEM []byte, err error)

// RenewAt is when a certificate valid from notBefore to notAfter should be
// renewed: after two thirds of its life, as most CAs advise.
func RenewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// Renewer keeps a node's certificate fresh: before it expires it makes a new
// key, has the CA sign it, saves it to Dir and swaps it into Credentials.
type Renewer struct {
	Creds *Credentials
	Dir   Dir
	Issue IssueFunc
	Log   *slog.Logger
	// Now and After are the clock; nil means the real one.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Retry is the wait after a failed renewal (default 10s).
	Retry time.Duration
}

// Run renews until ctx ends.
func (r *Renewer) Run(ctx context.Context) error {
	now, after := r.Now, r.After
	if now == nil {
		now = time.Now
	}
	if after == nil {
		after = time.After
	}
	retry := r.Retry
	if retry == 0 {
		retry = 10 * time.Second
	}
	for {
		leaf := r.Creds.Leaf()
		wait := RenewAt(leaf.NotBefore, leaf.NotAfter).Sub(now())
		select {
		case <-ctx.Done():
			return nil
		case <-after(max(wait, 0)):
		}
		if err := r.renew(ctx); err != nil {
			r.Log.Warn("certificate renewal failed; will retry", "err", err, "expires", leaf.NotAfter, "retry_in", retry)
			select {
			case <-ctx.Done():
				return nil
			case <-after(retry):
			}
			continue
		}
		r.Log.Info("certificate renewed", "node", r.Creds.Identity().NodeID, "expires", r.Creds.Leaf().NotAfter)
	}
}

func (r *Renewer) renew(ctx context.Context) error {
	keyPEM, csrPEM, err := NewKeyAndCSR()
	if err != nil {
		return err
	}
	certPEM, rootPEM, err := r.Issue(ctx, csrPEM)
	if err != nil {
		return err
	}
	if err := r.Creds.Replace(rootPEM, certPEM, keyPEM); err != nil {
		return err
	}
	return r.Dir.Save(rootPEM, certPEM, keyPEM)
}
