package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/testhost"
	"berth/internal/testimage"
	"berth/overlay/dataplane"
)

// TestDevPublishes: Docker's first command, on `berth-manager --dev`:
// `berth service create -p 8080:8080 app` answers on the machine's port
// 8080, on its own address and on 127.0.0.1, and the task resolves the
// service's name through the agent's DNS. The manager and the CLI run in
// a test host's network namespace (lo and one veth), listening on
// 127.0.0.1 as a user on a laptop would: the overlay takes the host's
// address for its underlay. Removing the service removes the bridge and
// the nftables table.
func TestDevPublishes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containers in a network namespace")
	}
	if testing.Short() {
		t.Skip("builds the binaries and runs a cluster")
	}
	bins, err := e2ecluster.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl := testhost.NewT(t, 1)
	h := cl.Hosts[0]
	images, err := testimage.StartAt(t.Context(), net.JoinHostPort(cl.Gateway.String(), "0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { images.Close() })
	dir := t.TempDir()
	logPath := filepath.Join(dir, "manager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	mgr := h.Command(t.Context(), bins.Manager, "--dev", "--data-dir", dir, "--listen-addr", "127.0.0.1:4242",
		"--insecure-registry", images.Registry.Addr(), "--cgroup-parent", e2ecluster.TestCgroupParent(t))
	mgr.Env = append(os.Environ(), "HOME="+dir)
	mgr.Stdout, mgr.Stderr = logf, logf
	proc, err := h.Start(mgr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Cmd.Process.Signal(syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		proc.Wait(ctx)
		if err := e2ecluster.CleanupAgent(filepath.Join(dir, "agent")); err != nil {
			t.Errorf("clean up the --dev agent: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("berth-manager --dev log:\n%s", b)
		}
	})
	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := h.Command(ctx, bins.CLI, args...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	await.True(t, 60*time.Second, func() bool {
		out, err := cli("node", "ls")
		return err == nil && strings.Count(out, "ready") == 2
	}, "the --dev manager and its agent are ready")
	if out, err := cli("service", "create", "--name", "web", "-p", "8080:8080", images.AppV1.Tag); err != nil {
		t.Fatalf("service create -p 8080:8080: %v\n%s", err, out)
	}

	type answer struct {
		Hostname string `json:"hostname"`
		DNS      struct {
			Addresses []string `json:"addresses"`
			Error     string   `json:"error"`
		} `json:"dns"`
	}
	get := func(addr string) (answer, error) {
		var a answer
		err := testhost.InNetns(h.NetnsPath(), func() error {
			// By hand, not with net/http, whose Transport dials on a
			// goroutine of its own, outside this thread's namespace.
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "GET /?lookup=web HTTP/1.0\r\nHost: web\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", resp.Status, b)
			}
			return json.Unmarshal(b, &a)
		})
		return a, err
	}
	for _, addr := range []string{netip.AddrPortFrom(h.Addr, 8080).String(), "127.0.0.1:8080"} {
		var a answer
		await.True(t, 60*time.Second, func() bool { a, err = get(addr); return err == nil }, "GET http://%s/ answers (last: %v)", addr, &err)
		if a.Hostname == "" || len(a.DNS.Addresses) != 1 {
			t.Errorf("GET http://%s/?lookup=web = %+v; want the task's hostname and the service's VIP from the agent's DNS", addr, a)
		}
	}

	if out, err := cli("service", "rm", "web"); err != nil {
		t.Fatalf("service rm: %v\n%s", err, out)
	}
	var left []string
	await.True(t, 30*time.Second, func() bool { left = overlayLeft(t, h); return len(left) == 0 },
		"service rm leaves no bridge, VXLAN device or table of the overlay (left: %v)", &left)
}

// overlayLeft lists the overlay's links and nftables tables in h's namespace.
func overlayLeft(t *testing.T, h *testhost.Host) []string {
	t.Helper()
	ns, err := netns.GetFromPath(h.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, dataplane.DefaultPrefix) {
			out = append(out, "link "+l.Attrs().Name)
		}
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, dataplane.DefaultPrefix) {
			out = append(out, "table "+tb.Name)
		}
	}
	return out
}

// TestOverlayNeedsDev: --overlay configures the agent --dev embeds, and
// is refused without --dev, naming the fix, before anything starts.
func TestOverlayNeedsDev(t *testing.T) {
	// Cancelled: a manager that started after all stops at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, arg := range []string{"--overlay", "--overlay=false"} {
		cmd := newCmd()
		cmd.SetArgs([]string{"--data-dir", t.TempDir(), "--listen-addr", "127.0.0.1:0", arg})
		err := cmd.ExecuteContext(ctx)
		if want := "--overlay is for the agent --dev embeds"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("berth-manager %s without --dev: %v; want %q", arg, err, want)
		}
	}
}
