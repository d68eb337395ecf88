package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/ca"
	"berth/internal/await"
	"berth/manager"
)

// startManager runs a one-manager cluster and returns its client bundle dir.
func startManager(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dataDir := t.TempDir()
	m, err := manager.New(manager.Config{DataDir: dataDir, ListenAddr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("manager did not stop")
		}
	})
	bundle := filepath.Join(dataDir, "client")
	await.True(t, 20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(bundle, bundleAddr))
		return err == nil
	}, "the manager writes its client bundle")
	return bundle
}

// berth runs the CLI with args and returns what it printed.
func berth(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestCLIWithManagerBundle: the CLI talks to a manager with the bundle the
// manager wrote, finding the manager's address in it.
func TestCLIWithManagerBundle(t *testing.T) {
	dir := startManager(t)
	var out string
	await.NoError(t, 20*time.Second, func() (err error) {
		out, err = berth(t, "--tls-dir", dir, "node", "ls")
		return err
	}, "berth node ls")
	if !strings.Contains(out, "leader") || !strings.Contains(out, "manager") || !strings.Contains(out, "ready") {
		t.Fatalf("node ls:\n%s", out)
	}

	tok, err := berth(t, "--tls-dir", dir, "cluster", "join-token", "manager", "-q")
	if err != nil || !strings.HasPrefix(tok, "BERTH-1-") {
		t.Fatalf("join-token: %q, %v", tok, err)
	}
	rotated, err := berth(t, "--tls-dir", dir, "cluster", "join-token", "manager", "--rotate", "-q")
	if err != nil || rotated == tok || !strings.HasPrefix(rotated, "BERTH-1-") {
		t.Fatalf("join-token --rotate: %q (was %q), %v", rotated, tok, err)
	}

	// The only manager cannot be demoted; the CLI passes the reason on.
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if _, err := berth(t, "--tls-dir", dir, "node", "demote", id); err == nil || !strings.Contains(err.Error(), "last manager") {
		t.Fatalf("demote the last manager: %v", err)
	}
}

// TestCLIWithoutBundle: with no bundle the CLI says where it looked and
// what to do.
func TestCLIWithoutBundle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	_, err := berth(t, "--tls-dir", dir, "--host", "127.0.0.1:1", "node", "ls")
	if err == nil || !strings.Contains(err.Error(), "no client certificate in "+dir) || !strings.Contains(err.Error(), "BERTH_TLS_DIR") {
		t.Fatalf("node ls without a bundle: %v", err)
	}
}

// TestUnreachableNamesTheBundle: when the bundle's manager does not
// answer, the error names the bundle's directory and its cluster, so that
// a bundle left by an earlier cluster is plain to see.
func TestUnreachableNamesTheBundle(t *testing.T) {
	dir := startManager(t)
	creds, err := ca.Dir(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	// The bundle now points at an address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, bundleAddr), []byte(dead+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = berth(t, "--tls-dir", dir, "node", "ls")
	want := "cannot reach a manager at " + dead + " (address and certificate from the bundle in " + dir + ", of cluster " + creds.Identity().ClusterID + ")"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("node ls against a dead address: %v\nwant %q", err, want)
	}
}
