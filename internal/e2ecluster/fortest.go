package e2ecluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// UpForTest brings up a cluster (in a temporary directory of t unless
// opts.Dir names one) and tears it down when t ends; when bringing it up
// fails, or t failed, it logs the tail of every node's log first.
func UpForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := Up(t.Context(), opts)
	if err != nil {
		LogTails(t, opts.Dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			LogTails(t, opts.Dir)
		}
		if err := c.Close(); err != nil {
			t.Errorf("tear down: %v", err)
		}
	})
	return c
}

// LogTails logs the last 6,000 bytes of every node's log in dir.
func LogTails(t testing.TB, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("---- %s (tail) ----\n%s", e.Name(), b)
	}
}

// BuildForMain builds the three binaries for a package's TestMain into a
// new temporary directory (named with prefix), or prints why it could not
// and exits 1. The returned function removes the directory.
func BuildForMain(prefix string) (Bins, func()) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bins, err := Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	return bins, func() { os.RemoveAll(dir) }
}
