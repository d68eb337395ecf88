package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/internal/await"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// leaderOf says which of mgrs the cluster reports as leading, asking cc.
func leaderOf(t testing.TB, cc pb.ControlClient, mgrs []*mgrProc) (*mgrProc, error) {
	resp, err := call(t, func(ctx context.Context) (*pb.GetClusterResponse, error) {
		return cc.GetCluster(ctx, &pb.GetClusterRequest{})
	})
	if err != nil {
		return nil, err
	}
	for _, m := range mgrs {
		if m.addr == resp.GetLeaderAddr() {
			return m, nil
		}
	}
	return nil, fmt.Errorf("leader %q is none of the managers", resp.GetLeaderAddr())
}

// TestManagersOnEtcd: three berth-manager processes keep the cluster in
// one etcd: they join with a manager token, see each other's writes,
// survive the leader's kill -9, say "etcd unreachable at …" in their log
// and in Control API errors while etcd is stopped (SIGSTOP), and resume
// when it is back. A wrong certificate or prefix fails at start, clearly.
func TestManagersOnEtcd(t *testing.T) {
	bin := buildManager(t)
	e := etcdtest.New(t)
	m1 := newMgr(t, bin, "m1", e.Endpoint())
	m1.start()
	c1 := m1.control()
	tok, err := call(t, func(ctx context.Context) (*pb.GetJoinTokenResponse, error) {
		return c1.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: pb.NodeSpec_ROLE_MANAGER})
	})
	if err != nil {
		t.Fatal(err)
	}
	mgrs := []*mgrProc{m1}
	for _, name := range []string{"m2", "m3"} {
		m := newMgr(t, bin, name, e.Endpoint(), "--join", m1.addr, "--token", tok.GetToken())
		m.start()
		mgrs = append(mgrs, m)
	}
	ccs := []pb.ControlClient{c1, mgrs[1].control(), mgrs[2].control()}
	await.NoError(t, settle, func() error {
		resp, err := call(t, func(ctx context.Context) (*pb.GetClusterResponse, error) {
			return ccs[2].GetCluster(ctx, &pb.GetClusterRequest{})
		})
		if err == nil && len(resp.GetMembers()) != 3 {
			err = fmt.Errorf("%d managers", len(resp.GetMembers()))
		}
		return err
	}, "three managers")
	if _, err := call(t, createService(ccs[1], "web")); err != nil {
		t.Fatalf("create through m2: %v", err)
	}
	if _, err := call(t, func(ctx context.Context) (*pb.GetServiceResponse, error) {
		return ccs[2].GetService(ctx, &pb.GetServiceRequest{ServiceId: "web"})
	}); err != nil {
		t.Fatalf("m3 reads m2's write: %v", err)
	}

	t.Run("leader killed", func(t *testing.T) { leaderKilled(t, mgrs, ccs) })
	t.Run("etcd stopped", func(t *testing.T) { etcdStopped(t, e, mgrs, ccs) })
	t.Run("bad start", func(t *testing.T) { badStart(t, bin, e, m1) })
}

// leaderKilled: kill -9 the leader; another manager leads within the
// lease and a write through a survivor succeeds.
func leaderKilled(t *testing.T, mgrs []*mgrProc, ccs []pb.ControlClient) {
	l, survivor, killed := killLeader(t, mgrs, ccs)
	await.NoError(t, settle, func() error {
		_, err := call(t, createService(survivor, "after-kill"))
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	}, "a write through a survivor after the leader's kill -9")
	t.Logf("a write succeeded %s after the leader's kill -9", time.Since(killed).Round(time.Millisecond))
	await.NoError(t, settle, func() error {
		nl, err := leaderOf(t, survivor, mgrs)
		if err == nil && nl == l {
			err = fmt.Errorf("the killed manager still leads")
		}
		return err
	}, "another manager leads")
	// Its presence lease runs out: the cluster reports it unreachable,
	// the others reachable.
	await.NoError(t, settle, func() error {
		resp, err := call(t, func(ctx context.Context) (*pb.GetClusterResponse, error) {
			return survivor.GetCluster(ctx, &pb.GetClusterRequest{})
		})
		if err != nil {
			return err
		}
		for _, m := range resp.GetMembers() {
			want := pb.ManagerStatus_REACHABILITY_REACHABLE
			if m.GetAddr() == l.addr {
				want = pb.ManagerStatus_REACHABILITY_UNREACHABLE
			}
			if m.GetReachability() != want {
				return fmt.Errorf("manager %s is %v, want %v", m.GetAddr(), m.GetReachability(), want)
			}
		}
		return nil
	}, "the killed manager is reported unreachable")
}

// etcdStopped: with etcd stopped, reads and writes fail saying etcd is
// unreachable and where, and the log says so; once it is back they work.
func etcdStopped(t *testing.T, e *etcdtest.Server, mgrs []*mgrProc, ccs []pb.ControlClient) {
	var live []int
	for i, m := range mgrs {
		if m.cmd != nil {
			live = append(live, i)
		}
	}
	m, cc := mgrs[live[0]], ccs[live[0]]
	if err := e.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := true
	defer func() {
		if paused {
			e.Resume()
		}
	}()
	want := "etcd unreachable at " + e.Endpoint()
	_, err := call(t, func(ctx context.Context) (*pb.ListServicesResponse, error) {
		return cc.ListServices(ctx, &pb.ListServicesRequest{})
	})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Errorf("a read with etcd stopped: %v; want Unavailable saying %q", err, want)
	}
	_, err = call(t, createService(cc, "while-stopped"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a write with etcd stopped: %v; want it to say %q", err, want)
	}
	await.True(t, settle, func() bool { return strings.Contains(m.logText(), "etcd unreachable") }, "the manager logs that etcd is unreachable")
	if err := e.Resume(); err != nil {
		t.Fatal(err)
	}
	paused = false
	await.NoError(t, settle, func() error {
		_, err := call(t, createService(cc, "after-etcd"))
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	}, "a write once etcd is back")
	await.True(t, settle, func() bool { return strings.Contains(m.logText(), "etcd reachable again") }, "the manager logs that etcd is back")
	for _, i := range live {
		await.NoError(t, settle, func() error {
			_, err := call(t, func(ctx context.Context) (*pb.GetServiceResponse, error) {
				return ccs[i].GetService(ctx, &pb.GetServiceRequest{ServiceId: "after-etcd"})
			})
			return err
		}, "manager %s sees the write made after etcd came back", mgrs[i].dir)
	}
}

// badStart: a wrong prefix or certificate, or a prefix that holds
// another cluster, ends berth-manager at start naming the flag.
func badStart(t *testing.T, bin string, e *etcdtest.Server, m1 *mgrProc) {
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(t.Context(), "/theirs/key", "v"); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	https := "https" + strings.TrimPrefix(e.Endpoint(), "http")
	for _, tc := range []struct {
		name     string
		endpoint string
		args     []string
		want     []string
	}{
		{"prefix not a path", e.Endpoint(), []string{"--etcd-prefix", "berth"}, []string{`--etcd-prefix "berth"`, "starting with /"}},
		{"prefix of others' keys", e.Endpoint(), []string{"--etcd-prefix", "/theirs"}, []string{"etcd prefix /theirs holds 1 keys that are not berth's", "--etcd-prefix"}},
		{"prefix of another cluster", e.Endpoint(), nil, []string{"etcd prefix /berth holds cluster", "--etcd-prefix"}},
		{"CA file not PEM", e.Endpoint(), []string{"--etcd-cacert", notPEM}, []string{"--etcd-cacert", "no PEM certificate"}},
		{"TLS to a plain etcd", https, []string{"--etcd-cacert", filepath.Join(m1.dir, "certs", ca.RootFile)}, []string{"etcd unreachable at " + https, "check --etcd-cacert"}},
	} {
		p := newMgr(t, bin, "bad", tc.endpoint, tc.args...)
		p.start()
		out := p.exit(settle)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: berth-manager said:\n%s\nwant it to say %q", tc.name, lastLines(out, 5), w)
			}
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// killLeader kills the leading manager with SIGKILL and returns it, a
// client of another manager, and when it was killed.
func killLeader(tb testing.TB, mgrs []*mgrProc, ccs []pb.ControlClient) (*mgrProc, pb.ControlClient, time.Time) {
	tb.Helper()
	l, err := leaderOf(tb, ccs[0], mgrs)
	if err != nil {
		tb.Fatal(err)
	}
	var survivor pb.ControlClient
	for i, m := range mgrs {
		if m != l {
			survivor = ccs[i]
		}
	}
	l.kill()
	return l, survivor, time.Now()
}
