package testhost

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
)

const wait = 10 * time.Second

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testhost needs root to make network namespaces, links and nftables rules")
	}
	for _, tool := range []string{"nsenter", "nft", "busybox", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("testhost needs %s: %v", tool, err)
		}
	}
}

// ping sends one ICMP echo from host h to addr and waits a second for the
// reply.
func ping(ctx context.Context, h *Host, addr netip.Addr) error {
	out, err := h.Command(ctx, "busybox", "ping", "-c1", "-W1", addr.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w: %s", addr, h.Name, err, out)
	}
	return nil
}

func reachable(t *testing.T, from *Host, to netip.Addr) {
	t.Helper()
	await.NoError(t, wait, func() error { return ping(t.Context(), from, to) }, "%s reaches %s", from.Name, to)
}

func unreachable(t *testing.T, from *Host, to netip.Addr) {
	t.Helper()
	await.True(t, wait, func() bool { return ping(t.Context(), from, to) != nil }, "%s stops reaching %s", from.Name, to)
}

func TestHostsReachEachOtherAndTheBridge(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 2)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	if !underlay.Contains(h1.Addr) || !c.Subnet.Contains(h2.Addr) || h1.Addr == h2.Addr {
		t.Fatalf("addresses %s and %s, want two distinct ones in %s inside %s", h1.Addr, h2.Addr, c.Subnet, underlay)
	}
	reachable(t, h1, h2.Addr)
	reachable(t, h2, h1.Addr)
	reachable(t, h1, c.Gateway)
}

func TestCutLinkStopsTrafficAndRestoreBringsItBack(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 2)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	reachable(t, h1, h2.Addr)

	if err := h2.CutLink(); err != nil {
		t.Fatal(err)
	}
	unreachable(t, h1, h2.Addr)
	unreachable(t, h2, h1.Addr)

	if err := h2.RestoreLink(); err != nil {
		t.Fatal(err)
	}
	reachable(t, h1, h2.Addr)
	reachable(t, h2, h1.Addr)
}

func TestDropBetweenPartitionsOnlyThatPair(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 3)
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	reachable(t, h1, h2.Addr)

	if err := c.DropBetween(t.Context(), h1, h2); err != nil {
		t.Fatal(err)
	}
	if err := c.DropBetween(t.Context(), h2, h1); err != nil {
		t.Fatalf("dropping an already dropped pair: %v", err)
	}
	unreachable(t, h1, h2.Addr)
	unreachable(t, h2, h1.Addr)
	reachable(t, h1, h3.Addr)
	reachable(t, h3, h2.Addr)

	if err := c.AllowBetween(t.Context(), h2, h1); err != nil {
		t.Fatal(err)
	}
	if err := c.AllowBetween(t.Context(), h1, h2); err != nil {
		t.Fatalf("allowing an allowed pair: %v", err)
	}
	reachable(t, h1, h2.Addr)
	reachable(t, h2, h1.Addr)
}

func TestCommandEntersOnlyTheNetworkNamespace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 1)
	h := c.Hosts[0]
	out, err := h.Command(t.Context(), "busybox", "ip", "-o", "-4", "addr").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in %s: %v: %s", h.Name, err, out)
	}
	if !strings.Contains(string(out), hostIf) || !strings.Contains(string(out), h.Addr.String()+"/24") {
		t.Fatalf("addresses in %s = %q, want %s on %s", h.Name, out, h.Addr, hostIf)
	}
	var ns []string
	for _, kind := range []string{"mnt", "net"} {
		out, err := h.Command(t.Context(), "busybox", "readlink", "/proc/self/ns/"+kind).Output()
		if err != nil {
			t.Fatalf("readlink %s namespace in %s: %v", kind, h.Name, err)
		}
		ns = append(ns, strings.TrimSpace(string(out)))
	}
	mnt, _ := os.Readlink("/proc/self/ns/mnt")
	net, _ := os.Readlink("/proc/self/ns/net")
	if len(ns) != 2 || ns[0] != mnt || ns[1] == net {
		t.Fatalf("namespaces inside = %q, want mount %s (the caller's) and a network namespace other than %s", ns, mnt, net)
	}
}

func TestKill9AndCloseLeaveNothingBehind(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c, err := Create(t.Context(), Options{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosts[0]
	victim, err := h.Start(h.Command(t.Context(), "busybox", "sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	st, ok := victim.Exited()
	if !ok || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("after Kill9: exited %v, state %v; want killed by SIGKILL", ok, st)
	}
	survivor, err := h.Start(h.Command(t.Context(), "busybox", "sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DropBetween(t.Context(), c.Hosts[0], c.Hosts[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := survivor.Exited(); !ok {
		t.Fatalf("process %d still runs after Close", survivor.PID())
	}
	assertGone(t, c.ID)
}

// assertGone fails t if any object of run id is left, as the system tools
// show them.
func assertGone(t *testing.T, id string) {
	t.Helper()
	tag := Prefix + id
	for _, args := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link"}, {"nft", "list", "ruleset"}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		if strings.Contains(string(out), tag) {
			t.Errorf("%s still shows %s:\n%s", strings.Join(args, " "), tag, out)
		}
	}
	if _, err := os.Stat(pidFile(id)); !os.IsNotExist(err) {
		t.Errorf("record of run %s: stat error %v, want it removed", id, err)
	}
}

func TestClustersGetDistinctRunsAndSubnets(t *testing.T) {
	needRoot(t)
	t.Parallel()
	a, b := NewT(t, 1), NewT(t, 1)
	if a.ID == b.ID || a.Subnet == b.Subnet {
		t.Fatalf("clusters share run %s/%s or subnet %s/%s", a.ID, b.ID, a.Subnet, b.Subnet)
	}
}

func TestCreateRejectsBadHostCount(t *testing.T) {
	for _, n := range []int{0, -1, MaxHosts + 1} {
		if _, err := Create(t.Context(), Options{N: n}); err == nil {
			t.Errorf("Create with N=%d succeeded, want an error", n)
		}
	}
}

func BenchmarkCreateClose(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("testhost needs root")
	}
	for _, n := range []int{2, 10} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			for b.Loop() {
				c, err := Create(b.Context(), Options{N: n})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
