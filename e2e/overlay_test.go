package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// TestOverlayAcrossHosts: a container on one host reaches a task on
// another by its overlay address; a container on another network cannot;
// removing the services and networks leaves no link or nftables table of
// ours on any host.
func TestOverlayAcrossHosts(t *testing.T) {
	c := up(t, 1, 3, nil)
	ctx := t.Context()
	for _, n := range []string{"back", "other"} {
		if _, err := c.CLI(ctx, "network", "create", n); err != nil {
			t.Fatal(err)
		}
	}
	a1, a2 := c.Agents[0], c.Agents[1]
	// A task on a2 first, so that a2 learns of web as soon as it exists.
	client(t, c, "sleeper", "back", a2.Name, "sleep 3600")
	runningOn(t, c, "sleeper", 1)
	created := time.Now()
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "web", "--network", "back",
		"--constraint", "node.hostname=="+a1.Name, c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool { return len(remoteEntries(t, a2)) > 0 }, "a2 gets web's peer entries")
	t.Logf("web's peer entries on a2 %s after service create", time.Since(created).Round(time.Millisecond))
	runningOn(t, c, "web", 1)
	ip := taskAddr(t, c, "web")
	if got := remoteEntries(t, a2); !slices.Contains(got, ip) {
		t.Fatalf("a2's entries %v do not hold web's address %s", got, ip)
	}

	// The client runs on another host, on the same network: its first
	// action fetches from web's address, with no retry (its network is
	// there before it runs), and it exits 0.
	fetch := get(ip)
	start := time.Now()
	client(t, c, "client", "back", a2.Name, fetch)
	if st := finalState(t, c, "client"); st != pb.TaskState_TASK_STATE_COMPLETE {
		dumpContainerLogs(t, a2)
		t.Fatalf("a container on %s could not reach web at %s on %s over network back: %s", a2.Name, ip, a1.Name, st)
	}
	t.Logf("client created, started and reached web across hosts in %s", time.Since(start).Round(time.Millisecond))

	// The same from a container on network "other": it must fail.
	client(t, c, "outsider", "other", a2.Name, get(ip))
	if st := finalState(t, c, "outsider"); st != pb.TaskState_TASK_STATE_FAILED {
		t.Fatalf("a container on network other ended %s fetching from web on network back; want failed (isolated)", st)
	}

	// web's agent restarts: it sweeps what no task uses (a leftover link
	// planted here) and web stays reachable.
	stale := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: dataplane.DefaultPrefix + "zstale"}}
	withHandle(t, a1.Host.NetnsPath(), func(h *netlink.Handle) error { return h.LinkAdd(stale) })
	if err := c.Restart(ctx, a1); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool { return !slices.Contains(overlayLeft(t, a1.Host.NetnsPath()), stale.Name) },
		"the restarted agent sweeps the stale link")
	client(t, c, "after-restart", "back", a2.Name, fetch)
	if st := finalState(t, c, "after-restart"); st != pb.TaskState_TASK_STATE_COMPLETE {
		dumpContainerLogs(t, a2)
		t.Fatalf("web is unreachable after its agent restarted: %s", st)
	}

	removed := time.Now()
	if _, err := c.CLI(ctx, "service", "rm", "web"); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool { return len(remoteEntries(t, a2)) == 0 }, "web's entries leave a2")
	t.Logf("web's peer entries gone from a2 %s after service rm", time.Since(removed).Round(time.Millisecond))

	for _, s := range []string{"sleeper", "client", "outsider", "after-restart"} {
		if _, err := c.CLI(ctx, "service", "rm", s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CLI(ctx, "network", "rm", "back", "other"); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Agents {
		await.True(t, wait, func() bool { return len(overlayLeft(t, a.Host.NetnsPath())) == 0 },
			"host %s keeps overlay links or nftables tables after its tasks ended", a.Name)
	}
}

// remoteEntries lists the addresses of the remote tasks a's VXLAN devices
// hold neighbour entries for.
func remoteEntries(t *testing.T, a *e2ecluster.Node) []string {
	t.Helper()
	var out []string
	withHandle(t, a.Host.NetnsPath(), func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if _, ok := l.(*netlink.Vxlan); !ok || !strings.HasPrefix(l.Attrs().Name, dataplane.DefaultPrefix) {
				continue
			}
			ns, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, n := range ns {
				if n.State&netlink.NUD_PERMANENT != 0 {
					out = append(out, n.IP.String())
				}
			}
		}
		return nil
	})
	return out
}

// dumpContainerLogs logs what the containers of agent a printed.
func dumpContainerLogs(t *testing.T, a *e2ecluster.Node) {
	logs, _ := filepath.Glob(filepath.Join(a.DataDir, "runtime", "containers", "*", "container.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		t.Logf("%s:\n%s", l, b)
	}
}

func withHandle(t *testing.T, nsPath string, fn func(*netlink.Handle) error) {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := fn(h); err != nil {
		t.Fatal(err)
	}
}

// get is a shell command that fetches / from the app at ip and succeeds
// when it answers (busybox's nc: its wget crashes in a static build).
func get(ip string) string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080 | grep -q '^HTTP/1.0 200'`, ip)
}

// client runs a one-shot busybox service on host on network net.
func client(t *testing.T, c *e2ecluster.Cluster, name, net, host, script string) {
	t.Helper()
	if _, err := c.CLI(t.Context(), "service", "create", "--detach", "--name", name, "--network", net,
		"--constraint", "node.hostname=="+host, "--restart-condition", "none",
		c.Images.Busybox.Tag, "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
}

// finalState waits until svc's task has ended and returns its state.
func finalState(t *testing.T, c *e2ecluster.Cluster, svc string) pb.TaskState {
	t.Helper()
	var st pb.TaskState
	await.True(t, wait, func() bool {
		tasks, err := c.Tasks(t.Context(), svc)
		if err != nil || len(tasks) == 0 {
			return false
		}
		st = tasks[0].GetStatus().GetState()
		return st > pb.TaskState_TASK_STATE_RUNNING
	}, "the task of %s ends", svc)
	return st
}

// taskAddr is the overlay address of svc's running task.
func taskAddr(t *testing.T, c *e2ecluster.Cluster, svc string) string {
	t.Helper()
	tasks, err := c.Tasks(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING && len(tk.GetNetworks()) > 0 {
			return netip.MustParsePrefix(tk.GetNetworks()[0].GetAddresses()[0]).Addr().String()
		}
	}
	t.Fatalf("%s has no running task with an address", svc)
	return ""
}

// overlayLeft lists the overlay links and nftables tables of ours in a
// host's namespace.
func overlayLeft(t *testing.T, nsPath string) []string {
	t.Helper()
	var out []string
	withHandle(t, nsPath, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, dataplane.DefaultPrefix) {
				out = append(out, l.Attrs().Name)
			}
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// Links changed during the dump (containers ending): the
			// listing may be short, so count it as not clean yet.
			out = append(out, "(link dump interrupted)")
			return nil
		}
		return err
	})
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, dataplane.DefaultPrefix) {
			out = append(out, "nft table "+tb.Name)
		}
	}
	return out
}
