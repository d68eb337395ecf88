package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"berth/agent/runtime"
	"berth/internal/await"
	"berth/internal/testimage"
	pb "berth/proto/berth/v1"
)

// portsRig is a runtime on a test data dir with a busybox root filesystem
// that serves /www/index.html.
type portsRig struct {
	rt     *runtime.Runtime
	rootfs string
}

const indexPage = "hello from inside the container"

func newPortsRig(t *testing.T) *portsRig {
	t.Helper()
	needRoot(t)
	dir := testDir(t)
	rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(dir, "runtime"), CgroupParent: cgroupParent()})
	if err != nil {
		t.Fatal(err)
	}
	// Detach before testDir's cleanup adopts and deletes the containers:
	// two runtimes finalizing one container race on its state dir.
	t.Cleanup(rt.Close)
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "dev", "sys", "tmp", "www"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"bin/busybox":    string(bin),
		"www/index.html": indexPage,
		"etc/passwd":     "root:x:0:0:root:/:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"sh", "httpd", "nc", "wc", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return &portsRig{rt: rt, rootfs: root}
}

func (r *portsRig) run(t *testing.T, id string, args ...string) *runtime.Container {
	t.Helper()
	c, err := r.rt.Run(context.Background(), runtime.Spec{ID: id, Rootfs: r.rootfs, Args: args, StopGrace: time.Second})
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return c
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func hostPort(p *pb.PortConfig) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.GetPublishedPort())))
}

func httpGet(url string) (string, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), nil
}

// roundTrip sends msg, half-closes, and returns all the answer.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	if err == nil && len(out) == 0 {
		err = errors.New("connection closed without an answer")
	}
	return string(out), err
}

// TestPortForwarderReachesContainer publishes two ports of a real
// container (loopback only, no plumbing) on the node: HTTP reaches the
// container's httpd, a half-closed TCP stream reaches nc | wc -c and its
// answer comes back, and Close frees the ports.
func TestPortForwarderReachesContainer(t *testing.T) {
	r := newPortsRig(t)
	ctr := r.run(t, "fwd", "sh", "-c", "httpd -f -p 8080 -h /www & exec nc -l -p 9000 -e wc -c")
	ctx := context.Background()
	fw, err := ListenPorts(ctx, []*pb.PortConfig{
		{TargetPort: 8080, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST},
		{TargetPort: 9000},
	}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	ports := fw.Ports()
	if len(ports) != 2 || ports[0].GetPublishedPort() == 0 || ports[1].GetPublishedPort() == 0 || ports[0].GetTargetPort() != 8080 {
		t.Fatalf("published %v: want the node ports that published port 0 took", ports)
	}
	if err := fw.Serve(ctx, ctr.NetnsPath()); err != nil {
		t.Fatal(err)
	}

	web := "http://" + hostPort(ports[0]) + "/"
	var body string
	await.NoError(t, 10*time.Second, func() (err error) { body, err = httpGet(web); return err }, "GET %s through the published port", web)
	if body != indexPage {
		t.Errorf("GET %s = %q, want the container's page %q", web, body, indexPage)
	}
	var got string
	await.NoError(t, 10*time.Second, func() (err error) { got, err = roundTrip(hostPort(ports[1]), "hello"); return err }, "round trip to nc")
	if strings.TrimSpace(got) != "5" {
		t.Errorf("wc -c in the container answered %q; want 5 (the 5 bytes sent, then EOF passed on)", got)
	}

	fw.Close()
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", hostPort(p), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after Close", p.GetPublishedPort())
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p.GetPublishedPort())))
		if err != nil {
			t.Errorf("port %d not free after Close: %v", p.GetPublishedPort(), err)
			continue
		}
		ln.Close()
	}
}

// TestPortForwarderUDP relays datagrams both ways to a UDP echo server in
// a container's network namespace.
func TestPortForwarderUDP(t *testing.T) {
	r := newPortsRig(t)
	ctr := r.run(t, "udp", "sleep", "1000")
	ns, err := netns.GetFromPath(ctr.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// busybox has no UDP server: the test runs one in the container's namespace.
	var echo *net.UDPConn
	if err := inNetns(ns, func() (err error) {
		echo, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	target := echo.LocalAddr().(*net.UDPAddr).Port
	hexPort := fmt.Sprintf(":%04X ", target)
	if inCtr, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", ctr.Pid())); !bytes.Contains(inCtr, []byte(hexPort)) {
		t.Fatalf("echo server on port %d is not in the container's namespace:\n%s", target, inCtr)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()

	ctx := context.Background()
	fw, err := ListenPorts(ctx, []*pb.PortConfig{{Protocol: pb.PortConfig_PROTOCOL_UDP, TargetPort: uint32(target)}}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if err := fw.Serve(ctx, ctr.NetnsPath()); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", hostPort(fw.Ports()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"one", "two"} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo:"+msg {
			t.Fatalf("answer %q, %v; want %q from the container", buf[:n], err, "echo:"+msg)
		}
	}
}

// TestPublishedPortClash: a port taken on the node fails with an error
// naming it; ingress ports are shared among a service's replicas, host
// ports are not.
func TestPublishedPortClash(t *testing.T) {
	ctx := context.Background()
	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint32(taken.Addr().(*net.TCPAddr).Port)
	takenUDP, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer takenUDP.Close()
	udpPort := uint32(takenUDP.LocalAddr().(*net.UDPAddr).Port)

	for _, tc := range []struct {
		name string
		p    *pb.PortConfig
		want string
	}{
		{"tcp host", &pb.PortConfig{TargetPort: 80, PublishedPort: port, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}, fmt.Sprintf("published port %d is already in use on this node", port)},
		{"tcp ingress", &pb.PortConfig{TargetPort: 80, PublishedPort: port}, fmt.Sprintf("published port %d is already in use on this node", port)},
		{"udp", &pb.PortConfig{Protocol: pb.PortConfig_PROTOCOL_UDP, TargetPort: 53, PublishedPort: udpPort}, fmt.Sprintf("published port %d/udp is already in use on this node", udpPort)},
		{"bad target", &pb.PortConfig{TargetPort: 0, PublishedPort: 1234}, "ports[1].target_port: 0 is not a port; use 1-65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			free := &pb.PortConfig{TargetPort: 80, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}
			fw, err := ListenPorts(ctx, []*pb.PortConfig{free, tc.p}, nil)
			if err == nil {
				fw.Close()
				t.Fatalf("published %v over a taken port", tc.p)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := ListenPorts(ctx, []*pb.PortConfig{{TargetPort: 80, PublishedPort: port}}, nil); !errors.Is(err, ErrPortInUse) {
		t.Errorf("err %v, want ErrPortInUse", err)
	}

	// Two replicas of a service publishing one ingress port share it.
	ingress := &pb.PortConfig{TargetPort: 80}
	a, err := ListenPorts(ctx, []*pb.PortConfig{ingress}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ingress.PublishedPort = a.Ports()[0].GetPublishedPort()
	b, err := ListenPorts(ctx, []*pb.PortConfig{ingress}, nil)
	if err != nil {
		t.Fatalf("second replica on ingress port %d: %v", ingress.PublishedPort, err)
	}
	b.Close()
	host := &pb.PortConfig{TargetPort: 80, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST, PublishedPort: ingress.PublishedPort}
	if _, err := ListenPorts(ctx, []*pb.PortConfig{host}, nil); !errors.Is(err, ErrPortInUse) {
		t.Errorf("host port over a published ingress port: err %v, want ErrPortInUse", err)
	}
}

func webTask(id, image string, published uint32) *pb.Task {
	t := busyTask(id, image, pb.TaskState_TASK_STATE_RUNNING, "httpd", "-f", "-p", "8080", "-h", "/etc")
	t.Endpoint = &pb.Endpoint{Spec: &pb.EndpointSpec{Ports: []*pb.PortConfig{
		{TargetPort: 8080, PublishedPort: published, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST},
	}}}
	return t
}

// TestAgentPublishesTaskPorts runs a task with a published port through
// the agent: the running status names the node port, HTTP through it
// reaches the container, a restarted agent publishes it again, a second
// task on the same port fails saying so, and shutdown frees the port.
func TestAgentPublishesTaskPorts(t *testing.T) {
	needRoot(t)
	f := testimage.Serve(t)
	c := newFakeCluster(t)
	m := startFakeManager(t, c, "mgr1")
	dir := testDir(t)
	a := startAgent(t, dir, []string{m.addr}, c.token.String())

	c.setTask(webTask("web", f.Busybox.Tag, 0))
	st := waitReported(t, c, "web", pb.TaskState_TASK_STATE_RUNNING)
	if len(st.GetPorts()) != 1 || st.GetPorts()[0].GetPublishedPort() == 0 || st.GetPorts()[0].GetTargetPort() != 8080 {
		t.Fatalf("running status ports %v: want 8080 published on a node port", st.GetPorts())
	}
	port := st.GetPorts()[0].GetPublishedPort()
	url := fmt.Sprintf("http://127.0.0.1:%d/passwd", port)
	get := func() {
		t.Helper()
		var body string
		await.NoError(t, 10*time.Second, func() (err error) { body, err = httpGet(url); return err }, "GET %s", url)
		if !strings.HasPrefix(body, "root:") {
			t.Errorf("GET %s = %q, want the container's /etc/passwd", url, body)
		}
	}
	get()

	// A restarted agent adopts the container and publishes its port again.
	a.stop()
	before := len(c.reported("web"))
	a = startAgent(t, dir, []string{m.addr}, "")
	await.True(t, 10*time.Second, func() bool {
		return len(c.reported("web")) > before && len(c.latest("web").GetPorts()) == 1
	}, "restarted agent reports the adopted task with its port: %v", reportList{c, "web"})
	if got := c.latest("web"); got.GetState() != pb.TaskState_TASK_STATE_RUNNING || got.GetPorts()[0].GetPublishedPort() != port {
		t.Fatalf("after restart: %v, want RUNNING on port %d", got, port)
	}
	get()

	c.setTask(webTask("clash", f.Busybox.Tag, port))
	st = waitReported(t, c, "clash", pb.TaskState_TASK_STATE_FAILED)
	if want := fmt.Sprintf("published port %d is already in use on this node", port); !strings.Contains(st.GetErr(), want) {
		t.Errorf("clashing task err %q, want it to say %q", st.GetErr(), want)
	}
	if _, err := a.rt.Get("clash"); err == nil {
		t.Error("a container was started for the task whose port was taken")
	}
	get() // the first task keeps its port

	c.setDesired("web", pb.TaskState_TASK_STATE_SHUTDOWN)
	st = waitReported(t, c, "web", pb.TaskState_TASK_STATE_SHUTDOWN)
	if len(st.GetPorts()) != 0 {
		t.Errorf("shut down task still reports ports %v", st.GetPorts())
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatalf("port %d not freed by the task's shutdown: %v", port, err)
	}
	ln.Close()
}
