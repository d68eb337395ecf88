package manager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestClientBundle: a manager writes the CLI's bundle to DATA_DIR/client
// (and to InstallClientBundle): the key readable by its owner only, a
// client certificate of this cluster, and this manager's address. An
// installed bundle of another cluster stays while that cluster answers,
// and is moved aside once it does not.
func TestClientBundle(t *testing.T) {
	tm := newTestManager(t, "m0")
	tm.cfg.InstallClientBundle = filepath.Join(t.TempDir(), "home", ".berth")
	tm.mustStart()
	await.True(t, settle, func() bool {
		_, err := os.Stat(filepath.Join(tm.cfg.InstallClientBundle, "manager-addr"))
		return err == nil
	}, "the bundle is installed")
	for _, dir := range []string{tm.bundleDir(), tm.cfg.InstallClientBundle} {
		for file, mode := range map[string]os.FileMode{ca.RootFile: 0o644, ca.CertFile: 0o644, ca.KeyFile: 0o600, "manager-addr": 0o644, ".": 0o700} {
			fi, err := os.Stat(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != mode {
				t.Errorf("%s/%s has mode %o, want %o", dir, file, got, mode)
			}
		}
		addr, err := os.ReadFile(filepath.Join(dir, "manager-addr"))
		if err != nil || strings.TrimSpace(string(addr)) != tm.m.Addr() {
			t.Errorf("%s/manager-addr = %q, %v; want %s", dir, addr, err, tm.m.Addr())
		}
		creds, err := ca.Dir(dir).Load()
		if err != nil {
			t.Fatal(err)
		}
		if id := creds.Identity(); id.Role != ca.RoleClient || id.ClusterID != tm.m.clusterID {
			t.Errorf("bundle in %s is for %+v", dir, id)
		}
	}
	if _, err := tm.control().ListNodes(ctxFor(t, settle), &pb.ListNodesRequest{}); err != nil {
		t.Fatalf("the bundle does not open the Control API: %v", err)
	}

	// A bundle already installed (of another cluster, say) is left alone.
	other := newTestManager(t, "m1")
	other.cfg.InstallClientBundle = tm.cfg.InstallClientBundle
	before, err := os.ReadFile(filepath.Join(tm.cfg.InstallClientBundle, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	other.mustStart()
	other.waitBundle()
	other.stop() // whatever it wrote is written
	after, err := os.ReadFile(filepath.Join(tm.cfg.InstallClientBundle, ca.CertFile))
	if err != nil || string(after) != string(before) {
		t.Fatalf("a second manager overwrote the installed bundle (%v)", err)
	}

	// Once that cluster no longer answers, a manager replaces its bundle
	// and keeps the old one aside.
	tm.stop()
	third := newTestManager(t, "m2")
	third.cfg.InstallClientBundle = tm.cfg.InstallClientBundle
	third.mustStart()
	third.waitBundle()
	await.True(t, settle, func() bool {
		creds, err := ca.Dir(tm.cfg.InstallClientBundle).Load()
		return err == nil && creds.Identity().ClusterID == third.m.clusterID
	}, "the bundle of the cluster that no longer answers is replaced")
	aside := tm.cfg.InstallClientBundle + ".old-" + tm.m.clusterID[:12]
	if kept, err := os.ReadFile(filepath.Join(aside, ca.CertFile)); err != nil || string(kept) != string(before) {
		t.Fatalf("the old bundle is not kept in %s (%v)", aside, err)
	}
}
