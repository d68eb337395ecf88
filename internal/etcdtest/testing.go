package etcdtest

import "testing"

// New starts an etcd on 127.0.0.1 for t, stopped at cleanup. Without
// etcd installed it fails t in an etcd run (a run that asked for etcd
// must not pass on nothing) and skips it otherwise.
func New(t testing.TB) *Server {
	t.Helper()
	if err := Installed(); err != nil {
		if OnEtcd() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := Start(t.Context(), t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// SkipOnEtcd skips t in an etcd run: for tests of Raft itself (its
// snapshots, log, joins and removals), with why.
func SkipOnEtcd(t testing.TB, why string) {
	t.Helper()
	if OnEtcd() {
		t.Skipf("%s=etcd: %s", StoreEnv, why)
	}
}
