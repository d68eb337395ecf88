package main

import (
	"strings"
	"testing"

	"berth/internal/etcdtest"
)

// TestStoreFlags: flag combinations that make no sense are refused
// before anything starts, naming the flag and the fix.
func TestStoreFlags(t *testing.T) {
	base := []string{"--data-dir", t.TempDir(), "--listen-addr", "127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "--etcd-endpoints needs --store etcd"},
		{[]string{"--etcd-prefix", "/x"}, "--etcd-prefix needs --store etcd"},
		{[]string{"--store", "raft", "--etcd-cacert", "ca.pem"}, "--etcd-cacert needs --store etcd"},
		{[]string{"--store", "zookeeper"}, `--store "zookeeper": want raft or etcd`},
		{[]string{"--store", "etcd"}, "--store etcd needs --etcd-endpoints"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379"}, `--etcd-endpoints "127.0.0.1:2379": want a URL`},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-cert", "c.pem"}, "--etcd-cert and --etcd-key go together"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--force-new-cluster"}, "--force-new-cluster and --store etcd exclude each other"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-lease-ttl", "1500ms"}, "--etcd-lease-ttl 1.5s: want whole seconds, at least 2s"},
	} {
		cmd := newCmd()
		cmd.SetArgs(append(append([]string{}, base...), tc.args...))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth-manager %s: %v; want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// storeArgs are the flags that put a test's manager on this run's
// backend: on etcd (BERTH_TEST_STORE=etcd), a real etcd of its own.
func storeArgs(t *testing.T) []string {
	t.Helper()
	if !etcdtest.OnEtcd() {
		return nil
	}
	e := etcdtest.New(t)
	return []string{"--store", "etcd", "--etcd-endpoints", e.Endpoint()}
}
