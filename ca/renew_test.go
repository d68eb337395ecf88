package ca

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// TestRenewerRenewsBeforeExpiry drives the renewer with a fake clock: after
// two thirds of the lifetime it has a new certificate on disk and in use.
func TestRenewerRenewsBeforeExpiry(t *testing.T) {
	start := time.Now()
	root, _ := NewRoot("c", start.Add(-time.Hour))
	issueFor := func(csr []byte, at time.Time) []byte {
		cert, err := root.Issue(IssueRequest{CSRPEM: csr, NodeID: "n1", Role: RoleWorker, Lifetime: 3 * time.Minute}, at)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	keyPEM, csrPEM, _ := NewKeyAndCSR()
	creds, err := NewCredentials(root.CertPEM, issueFor(csrPEM, start), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dir := Dir(t.TempDir())
	clock := start
	waits := make(chan time.Duration, 10)
	fire := make(chan time.Time)
	r := &Renewer{
		Creds: creds, Dir: dir, Log: slog.New(slog.DiscardHandler),
		Now:   func() time.Time { return clock },
		After: func(d time.Duration) <-chan time.Time { waits <- d; return fire },
		Issue: func(_ context.Context, csr []byte) ([]byte, []byte, error) {
			return issueFor(csr, clock), root.CertPEM, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	first := creds.Leaf()
	wait := <-waits
	// Issued 5 minutes back-dated: valid 8 minutes, renew at 2/3 of that.
	if want := RenewAt(first.NotBefore, first.NotAfter).Sub(start); wait != want {
		t.Fatalf("renewer waits %s, want %s", wait, want)
	}
	clock = start.Add(wait)
	fire <- clock
	<-waits // the next wait starts only after the renewal finished
	if creds.Leaf().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certificate was not replaced")
	}
	onDisk, err := dir.Load()
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Leaf().SerialNumber.Cmp(creds.Leaf().SerialNumber) != 0 {
		t.Fatal("renewed certificate not saved")
	}
	cancel()
	<-done
}
