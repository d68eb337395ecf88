package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth/ca"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/etcdstore"
)

// testEtcd is the one etcd of an etcd test run (BERTH_TEST_STORE=etcd),
// started by the first manager that needs it; each test cluster keeps
// its state under a prefix of its own.
var testEtcd struct {
	once     sync.Once
	srv      *etcdtest.Server
	err      error
	prefixes atomic.Int64
}

func TestMain(m *testing.M) {
	if _, err := etcdtest.Store(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	if testEtcd.srv != nil {
		testEtcd.srv.Stop()
		os.RemoveAll(testEtcd.srv.Dir)
	}
	os.Exit(code)
}

// testLeaseTTL is the etcd leader's lease in tests: a killed leader is
// replaced within it.
const testLeaseTTL = 3 * time.Second

// etcdConfig is a fresh prefix on the run's etcd, nil in a Raft run.
func etcdConfig(t testing.TB) *EtcdConfig {
	t.Helper()
	if !etcdtest.OnEtcd() {
		return nil
	}
	testEtcd.once.Do(func() {
		if testEtcd.err = etcdtest.Installed(); testEtcd.err != nil {
			return
		}
		dir, err := os.MkdirTemp("", fmt.Sprintf("berth-etcd-%d-", os.Getpid()))
		if err != nil {
			testEtcd.err = err
			return
		}
		testEtcd.srv, testEtcd.err = etcdtest.Start(context.Background(), dir, "127.0.0.1")
	})
	if testEtcd.err != nil {
		t.Fatalf("etcd for %s=etcd: %v", etcdtest.StoreEnv, testEtcd.err)
	}
	return &EtcdConfig{
		Dial:     etcdstore.DialConfig{Endpoints: []string{testEtcd.srv.Endpoint()}},
		Prefix:   fmt.Sprintf("/t%d", testEtcd.prefixes.Add(1)),
		LeaseTTL: testLeaseTTL,
	}
}

// joins makes tm join first's cluster with tok: through first's address,
// and on etcd under first's prefix.
func (tm *testManager) joins(first *testManager, tok string) {
	tm.cfg.Join, tm.cfg.Token = []string{first.m.Addr()}, tok
	tm.cfg.Etcd = first.cfg.Etcd
}

// TestDataDirKeepsItsBackend: a manager's data dir is of one backend: a
// Raft manager restarted with etcd flags (or the reverse) stops at start
// saying which flags its cluster needs.
func TestDataDirKeepsItsBackend(t *testing.T) {
	tm := newTestManager(t, "m0")
	tm.mustStart()
	tm.waitBundle()
	tm.stop()
	was := tm.cfg.Etcd
	if was == nil {
		if err := etcdtest.Installed(); err != nil {
			t.Skip(err)
		}
		srv := etcdtest.New(t)
		tm.cfg.Etcd = &EtcdConfig{Dial: etcdstore.DialConfig{Endpoints: []string{srv.Endpoint()}}}
	} else {
		tm.cfg.Etcd = nil
	}
	err := tm.start()
	want := "keeps its state in the embedded Raft: start it without --store etcd"
	if was != nil {
		want = "keeps its state in etcd: start it with --store etcd"
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restarted on the other backend: %v; want %q", err, want)
	}
	tm.cfg.Etcd = was
	tm.mustStart()
}

// TestCAKeySealedInEtcd: on etcd, as on Raft, the cluster's CA key is in
// the state only sealed under the cluster key: no key in clear anywhere
// under the prefix, and the bootstrap file that held it until the Cluster
// object was written is gone.
func TestCAKeySealedInEtcd(t *testing.T) {
	srv := etcdtest.New(t)
	tm := newTestManager(t, "m0")
	tm.cfg.Etcd = &EtcdConfig{Dial: etcdstore.DialConfig{Endpoints: []string{srv.Endpoint()}}, Prefix: "/sealed", LeaseTTL: testLeaseTTL}
	tm.mustStart()
	tm.waitBundle()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(t.Context(), "/sealed/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var cluster bool
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), "PRIVATE KEY") {
			t.Errorf("etcd key %s holds a private key in clear", kv.Key)
		}
		cluster = cluster || strings.HasPrefix(string(kv.Key), "/sealed/objects/cluster/")
	}
	if !cluster {
		t.Fatal("no Cluster object in etcd")
	}
	var c *pb.Cluster
	tm.m.Store().View(func(tx store.ReadTx) { c = tx.GetCluster(tm.m.clusterID) })
	if len(c.GetRootCa().GetCaKey()) == 0 {
		t.Fatal("the Cluster object carries no sealed CA key")
	}
	if _, err := ca.Open(tm.m.id.clusterKey, c.GetRootCa().GetCaKey()); err != nil {
		t.Fatalf("the CA key in etcd does not open with the cluster key: %v", err)
	}
	if _, err := os.Stat(tm.m.path(sealedCAKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the bootstrap CA key file is still there: %v", err)
	}
}
