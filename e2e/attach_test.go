package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// TestAttachableNetworkOnRealHosts: `berth-agent run --network` on a node
// puts a standalone container on an attachable network, as docker run
// does on a swarm node. From the container: the service's name and
// tasks.NAME resolve, its VIP answers from every replica on another host,
// and the outside is reached through the node. From a service's task on
// the other host: the container's name and alias resolve to its address
// and reach it. A network made without --attachable is refused with the
// managers' words and leaves no container. Once the container ends (the
// foreground run's exit, or rm -f of a -d one), its name leaves DNS and no
// veth of it is left on its node.
func TestAttachableNetworkOnRealHosts(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	a1, a2 := c.Agents[0], c.Agents[1]
	if _, err := c.CLI(ctx, "network", "create", "--attachable", "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CLI(ctx, "network", "create", "plain"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--name", "web", "--replicas", "2", "--network", "shared", "--constraint", "node.hostname==" + a2.Name, c.Images.AppV1.Tag},
		{"--name", "probe", "--network", "shared", "--constraint", "node.hostname==" + a2.Name, c.Images.Busybox.Tag, "sleep", "3600"},
	} {
		if _, err := c.CLI(ctx, append([]string{"service", "create", "--detach"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	runningOn(t, c, "web", 2)
	runningOn(t, c, "probe", 1)
	probe := liveTasks(t, c, "probe")[1]
	gw := nameserver(t, probe)
	run := &agentRun{t: t, c: c, node: a1}

	t.Run("not attachable", func(t *testing.T) {
		out, errOut, code := run.do(ctx, "--rm", "--network", "plain", c.Images.Busybox.Tag, "echo", "ran")
		if code != 125 || strings.Contains(out, "ran") || !strings.Contains(errOut, "--attachable") {
			t.Fatalf("run --network plain: exit %d, stdout %q, stderr %q; want 125 and the managers' refusal naming --attachable", code, out, errOut)
		}
		t.Logf("run --network plain: %s", strings.TrimSpace(errOut))
		if left := run.containers(ctx); len(left) != 0 {
			t.Fatalf("the refused run left containers %v", left)
		}
	})

	// The foreground container checks what it reaches, says "ready", and
	// waits for /tmp/stop, answering "pong" on port 7000 meanwhile.
	script := fmt.Sprintf(`(while true; do echo pong | nc -l -p 7000; done) &
echo '== web'; nslookup -type=a web
echo '== tasks.web'; nslookup -type=a tasks.web
echo '== vip'; for i in $(seq 16); do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 web 8080; echo; done
echo '== out'; printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 3 %s | head -1
echo '== ready'
while [ ! -e /tmp/stop ]; do sleep 0.1; done`, strings.Replace(c.Images.Registry.Addr(), ":", " ", 1))
	fg := run.start(ctx, "--rm", "--name", "solo", "--network", "shared", "--network-alias", "lone", "-p", "17000:7000", c.Images.Busybox.Tag, "sh", "-c", script)
	out := fg.await("== ready")
	addr := run.address(ctx, "solo")
	// Its name resolves elsewhere once its node reported it running.
	ready := time.Now()
	waitAnswer(t, probe, gw, "solo.", func(a []string) bool { return slices.Equal(a, []string{addr}) })
	t.Logf("solo is at %s on shared; it resolved on %s %s after its script printed ready", addr, a2.Name, time.Since(ready).Round(time.Millisecond))
	if log, err := os.ReadFile(a1.Log); err == nil {
		if m := regexp.MustCompile(`msg="container attached to networks".* container=solo .*took=(\S+)`).FindSubmatch(log); m != nil {
			t.Logf("the daemon attached solo in %s (managers' attachment, its arrival, the wiring)", m[1])
		}
	}

	web := liveTasks(t, c, "web")
	if got, want := answers(section(out, "web")), []string{serviceVIP(t, c, "web")}; !slices.Equal(got, want) {
		t.Errorf("nslookup web in solo: %v, want the VIP %v\n%s", got, want, out)
	}
	if got, want := answers(section(out, "tasks.web")), addrsOfTasks(web); !slices.Equal(got, want) {
		t.Errorf("nslookup tasks.web in solo: %v, want %v", got, want)
	}
	hosts := map[string]bool{}
	for _, m := range regexp.MustCompile(`"hostname":\s*"([^"]+)"`).FindAllStringSubmatch(section(out, "vip"), -1) {
		hosts[m[1]] = true
	}
	if len(hosts) != 2 {
		t.Errorf("16 requests to web's VIP from solo reached %v, want both replicas:\n%s", hosts, section(out, "vip"))
	}
	if o := section(out, "out"); !strings.Contains(o, "HTTP/1") {
		t.Errorf("solo reaching the registry outside the overlay (%s): %q", c.Images.Registry.Addr(), o)
	}
	for _, name := range []string{"solo", "lone"} {
		if got := nslookup(t, c, "probe", name); !slices.Equal(got, []string{addr}) {
			t.Errorf("nslookup %s in probe (on %s): %v, want solo's %s", name, a2.Name, got, addr)
		}
		o, errOut, err := cliOut(ctx, c, "exec", "probe", "--", "nc", "-w", "3", name, "7000")
		if err != nil || !strings.Contains(o, "pong") {
			t.Errorf("probe connecting to %s:7000: %v %q %q", name, err, o, errOut)
		}
	}

	// -p works alongside: the host's port reaches the container (whose
	// nc loop listens again a moment after each connection).
	await.True(t, 10*time.Second, func() bool {
		got, _ := readFrom(netip.AddrPortFrom(a1.Host.Addr, 17000))
		return strings.Contains(got, "pong")
	}, "%s:17000 (run -p 17000:7000) answers pong", a1.Host.Addr)

	// The container ends: the foreground run takes it off its networks.
	fg.stop()
	if code := fg.wait(); code != 0 {
		t.Errorf("run exited %d, want 0", code)
	}
	ended := time.Now()
	gone := awaitNX(t, probe, gw, "solo.")
	t.Logf("solo was NXDOMAIN on %s %s after its run exited", a2.Name, gone.Sub(ended).Round(time.Millisecond))
	awaitNoVeth(t, a1)

	// A -d container is ended by the daemon's watch once rm -f kills it.
	if o, errOut, code := run.do(ctx, "-d", "-q", "--name", "solo2", "--network", "shared", c.Images.Busybox.Tag, "sleep", "3600"); code != 0 {
		t.Fatalf("run -d: exit %d %q %q", code, o, errOut)
	}
	waitAnswer(t, probe, gw, "solo2.", func(a []string) bool { return len(a) == 1 })
	// Its node's daemon restarts (kill -9, started again): the new one
	// adopts it, keeps it on the network and watches it.
	if err := c.Restart(ctx, a1); err != nil {
		t.Fatal(err)
	}
	if got := nslookup(t, c, "probe", "solo2"); len(got) != 1 {
		t.Errorf("solo2 after its daemon restarted: %v, want its address", got)
	}
	// The new daemon keeps its VIP table current: a third web replica
	// joins it.
	if _, err := c.CLI(ctx, "service", "scale", "--detach", "web=3"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "web", 3)
	webAddrs := addrsOfTasks(liveTasks(t, c, "web"))
	pid2 := run.pid(ctx, "solo2")
	await.True(t, wait, func() bool {
		b := vipBackends(t, pid2)
		return !slices.ContainsFunc(webAddrs, func(a string) bool { return !slices.Contains(b, a) })
	}, "solo2's VIP table holds web's 3 replicas %v after its daemon restarted", webAddrs)

	if _, errOut, code := run.do(ctx, "rm", "-f", "solo2"); code != 0 {
		t.Fatalf("rm -f solo2: exit %d %q", code, errOut)
	}
	removed := time.Now()
	gone = awaitNX(t, probe, gw, "solo2.")
	t.Logf("solo2 was NXDOMAIN on %s %s after rm -f", a2.Name, gone.Sub(removed).Round(time.Millisecond))
	awaitNoVeth(t, a1)
}

// agentRun runs berth-agent commands on an agent's host and data dir.
type agentRun struct {
	t    *testing.T
	c    *e2ecluster.Cluster
	node *e2ecluster.Node
}

// cmd is `berth-agent SUB --data-dir DATA ...` (run: ARGS after run's
// cgroup parent, the node's own).
func (r *agentRun) cmd(ctx context.Context, args ...string) *exec.Cmd {
	sub := "run"
	if len(args) > 0 && (args[0] == "ps" || args[0] == "rm" || args[0] == "inspect") {
		sub, args = args[0], args[1:]
	}
	flags := []string{sub, "--data-dir", r.node.DataDir}
	if sub == "run" {
		flags = append(flags, "--cgroup-parent", r.cgroupParent(), "--insecure-registry", r.c.Images.Registry.Addr(), "-q")
	}
	return r.node.Host.Command(ctx, bins.Agent, append(flags, args...)...)
}

func (r *agentRun) cgroupParent() string {
	if i := slices.Index(r.node.Args, "--cgroup-parent"); i >= 0 {
		return r.node.Args[i+1] + "-run"
	}
	r.t.Fatal("the agent has no --cgroup-parent")
	return ""
}

// do runs a command to its end.
func (r *agentRun) do(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	cmd := r.cmd(ctx, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		r.t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// containers lists the node's containers of berth-agent run.
func (r *agentRun) containers(ctx context.Context) []string {
	r.t.Helper()
	out, errOut, code := r.do(ctx, "ps", "--format", "json")
	var views []struct {
		ID    string `json:"id"`
		Owner string `json:"owner"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil {
		r.t.Fatalf("ps: exit %d %q %q", code, out, errOut)
	}
	var ids []string
	for _, v := range views {
		if v.Owner == "run" {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

// address is the first address berth-agent inspect shows for container id.
func (r *agentRun) address(ctx context.Context, id string) string {
	r.t.Helper()
	out, errOut, code := r.do(ctx, "inspect", id)
	var views []struct {
		Networks struct {
			Networks []struct {
				Addresses []string `json:"addresses"`
			} `json:"networks"`
		} `json:"networks"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 ||
		len(views[0].Networks.Networks) == 0 || len(views[0].Networks.Networks[0].Addresses) == 0 {
		r.t.Fatalf("inspect %s: exit %d, %q %q: want its networks and addresses", id, code, out, errOut)
	}
	return netip.MustParsePrefix(views[0].Networks.Networks[0].Addresses[0]).Addr().String()
}

// foreground is a berth-agent run in the foreground.
type foreground struct {
	t    *testing.T
	r    *agentRun
	cmd  *exec.Cmd
	id   string
	mu   sync.Mutex
	out  strings.Builder
	errs strings.Builder
	done chan struct{}
}

func (r *agentRun) start(ctx context.Context, args ...string) *foreground {
	r.t.Helper()
	f := &foreground{t: r.t, r: r, cmd: r.cmd(ctx, args...), done: make(chan struct{})}
	f.id = args[slices.Index(args, "--name")+1]
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	f.cmd.Stderr = &lockedWriter{mu: &f.mu, w: &f.errs}
	if err := f.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.mu.Lock()
			f.out.WriteString(sc.Text() + "\n")
			f.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
		f.cmd.Wait()
		close(f.done)
	}()
	r.t.Cleanup(func() { f.cmd.Process.Kill(); <-f.done; r.do(context.Background(), "rm", "-f", f.id) })
	return f
}

// await waits until the container printed line and returns its output.
func (f *foreground) await(line string) string {
	f.t.Helper()
	await.True(f.t, wait, func() bool {
		select {
		case <-f.done:
			return true
		default:
		}
		return strings.Contains(f.output(), line+"\n")
	}, "the container prints %q", line)
	if !strings.Contains(f.output(), line+"\n") {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.t.Fatalf("run ended (%v) before %q: stdout %q stderr %q", f.cmd.ProcessState, line, f.out.String(), f.errs.String())
	}
	return f.output()
}

func (f *foreground) output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

// stop ends the container's script: it waits for /tmp/stop.
func (f *foreground) stop() {
	f.t.Helper()
	pid := f.r.pid(context.Background(), f.id)
	if err := os.WriteFile(filepath.Join(fmt.Sprintf("/proc/%d/root", pid), "tmp", "stop"), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// pid is the host PID of container id's init.
func (r *agentRun) pid(ctx context.Context, id string) int {
	r.t.Helper()
	out, errOut, code := r.do(ctx, "inspect", id)
	var v []struct {
		State struct {
			Pid int `json:"pid"`
		} `json:"state"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || len(v) != 1 || v[0].State.Pid == 0 {
		r.t.Fatalf("inspect %s: %d %q %q", id, code, out, errOut)
	}
	return v[0].State.Pid
}

// wait waits for run to exit and returns its exit code.
func (f *foreground) wait() int {
	f.t.Helper()
	select {
	case <-f.done:
	case <-time.After(wait):
		f.t.Fatal("run did not exit")
	}
	return f.cmd.ProcessState.ExitCode()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readFrom connects to addr and reads what it says until it closes.
func readFrom(addr netip.AddrPort) (string, error) {
	conn, err := net.DialTimeout("tcp", addr.String(), 3*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(conn)
	return string(b), err
}

// section is what the script printed after "== name", up to the next.
func section(out, name string) string {
	_, rest, _ := strings.Cut(out, "== "+name+"\n")
	body, _, _ := strings.Cut(rest, "\n== ")
	return body
}

// answers are the addresses busybox's nslookup printed, sorted.
func answers(out string) []string {
	_, ans, _ := strings.Cut(out, "Name:")
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^Address: (\S+)$`).FindAllStringSubmatch(ans, -1) {
		got = append(got, m[1])
	}
	slices.Sort(got)
	return got
}

// awaitNX waits until name is NXDOMAIN for tk's container (a few seconds
// at most: the detach is immediate, its spread to other nodes takes
// milliseconds) and returns when it first was.
func awaitNX(t *testing.T, tk *pb.Task, server netip.Addr, name string) time.Time {
	t.Helper()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r, err := askFrom(tk, server, name)
		if err != nil {
			last = err.Error()
			continue
		}
		if last = mdns.RcodeToString[r.Rcode]; r.Rcode == mdns.RcodeNameError {
			return time.Now()
		}
	}
	t.Fatalf("%s is not NXDOMAIN 5s after its container ended; last answer %s", name, last)
	return time.Time{}
}

// awaitNoVeth waits until no container veth of ours is left on node n.
func awaitNoVeth(t *testing.T, n *e2ecluster.Node) {
	t.Helper()
	var left []string
	await.True(t, 5*time.Second, func() bool {
		left = left[:0]
		withHandle(t, n.Host.NetnsPath(), func(h *netlink.Handle) error {
			links, err := h.LinkList()
			for _, l := range links {
				if strings.HasPrefix(l.Attrs().Name, dataplane.DefaultPrefix+"e") {
					left = append(left, l.Attrs().Name)
				}
			}
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				left = append(left, "(link dump interrupted)")
				return nil
			}
			return err
		})
		return len(left) == 0
	}, "no container veth left on %s after the container ended; left: %v", n.Name, &left)
}
