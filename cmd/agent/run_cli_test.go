package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/testimage"
)

// agentCLI runs berth-agent commands on one data dir.
type agentCLI struct {
	t         *testing.T
	bin, data string
	cgroups   string // run's --cgroup-parent
}

func newAgentCLI(t *testing.T) (*agentCLI, *testimage.Fixture) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("berth-agent run needs root (namespaces, cgroups, mounts)")
	}
	fx := testimage.Serve(t)
	return &agentCLI{t: t, bin: buildAgent(t), data: t.TempDir(), cgroups: e2ecluster.TestCgroupParent(t)}, fx
}

// cmd is berth-agent SUB --data-dir DATA ARGS...
func (a *agentCLI) cmd(sub string, args ...string) *exec.Cmd {
	flags := []string{sub, "--data-dir", a.data}
	if sub == "run" {
		flags = append(flags, "--cgroup-parent", a.cgroups)
	}
	return exec.Command(a.bin, append(flags, args...)...)
}

// do runs a command to its end with stdin and returns what it printed.
func (a *agentCLI) do(stdin string, sub string, args ...string) (stdout, stderr string, code int) {
	a.t.Helper()
	cmd := a.cmd(sub, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		a.t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestRunTakesTheImageFirst: berth-agent run IMAGE [COMMAND...] as docker
// run; what follows the image is the command's, flags included; bad
// combinations are refused before anything runs.
func TestRunTakesTheImageFirst(t *testing.T) {
	a, fx := newAgentCLI(t)
	img := fx.Busybox.Tag
	for _, args := range [][]string{
		{"--rm", "-q", img, "sh", "-c", "echo $0-$1 -q", "a", "b"},
		{"--rm", "-q", img, "--", "sh", "-c", "echo $0-$1 -q", "a", "b"},
	} {
		if out, errOut, code := a.do("", "run", args...); code != 0 || out != "a-b -q\n" {
			t.Errorf("run %q: exit %d, stdout %q, stderr %q; want 0 and \"a-b -q\\n\"", args, code, out, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", img, "--", "true"}, "--image is gone: give the image as the first argument, as with docker run: berth-agent run [OPTIONS] IMAGE [COMMAND [ARG...]]"},
		{[]string{"--rm"}, "an image is required: berth-agent run [OPTIONS] IMAGE"},
		{[]string{"--name", "-bad", img, "true"}, `--name "-bad": use 1-128 letters`},
		{[]string{"-d", "--rm", img, "true"}, "--rm with -d: nothing stays to remove the container"},
		{[]string{"-d", "-i", img, "sh"}, "-i with -d"},
		{[]string{"-d", "-p", "8080:80", img, "true"}, "-p with -d: published ports are forwarded by the foreground berth-agent run"},
		{[]string{"--network-host", "-p", "8080:80", img, "true"}, "-p with --network-host"},
		{[]string{"-p", "127.0.0.1:8080:80", img, "true"}, `--publish "127.0.0.1:8080:80": berth-agent run takes HOST:CONTAINER[/tcp|udp]`},
	} {
		out, errOut, code := a.do("", "run", tc.args...)
		if code != 125 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("run %q: exit %d, stdout %q, stderr %q; want 125 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(a.data, runDir, "containers")); len(entries) != 0 {
		t.Errorf("refused runs left %d containers", len(entries))
	}
}

// TestRunDetached: run -d prints the ID and returns; ps, logs, stop and
// rm find the container afterwards; its name is taken until rm.
func TestRunDetached(t *testing.T) {
	a, fx := newAgentCLI(t)
	t.Cleanup(func() { a.do("", "rm", "-f", "web", "gone") }) // a failed test leaves none running
	out, errOut, code := a.do("", "run", "-d", "-q", "--name", "web", "-l", "app=web", "--label", "tier=", fx.Busybox.Tag, "sh", "-c", "echo up; exec sleep 1000")
	if code != 0 || out != "web\n" {
		t.Fatalf("run -d: exit %d, stdout %q, stderr %q; want the ID", code, out, errOut)
	}
	ps := func() string { out, _, _ := a.do("", "ps"); return out }
	if got := ps(); !regexp.MustCompile(`(?m)^web +running +sh -c echo up; exec sleep 1000$`).MatchString(got) {
		t.Errorf("ps = %q, want web running", got)
	}
	await.True(t, 10*time.Second, func() bool { out, _, _ := a.do("", "logs", "web"); return out == "up\n" }, "logs web says up")
	checkLabels(t, a)
	if _, errOut, code := a.do("", "run", "-d", "-q", "--name", "web", fx.Busybox.Tag, "true"); code != 125 || !strings.Contains(errOut, "the name web is taken; remove that container with `berth-agent rm web`") {
		t.Errorf("second web: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := a.do("", "rm", "web"); code != 1 || !strings.Contains(errOut, "container web is running: stop it first") {
		t.Errorf("rm of a running container: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := a.do("", "stop", "-t", "5s", "web"); code != 0 || out != "web\n" {
		t.Fatalf("stop: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := ps(); !regexp.MustCompile(`(?m)^web +exited \(143\) `).MatchString(got) {
		t.Errorf("ps after stop = %q, want web exited (143)", got)
	}
	if out, errOut, code := a.do("", "rm", "web"); code != 0 || out != "web\n" {
		t.Fatalf("rm: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := ps(); strings.Contains(got, "web") {
		t.Errorf("ps after rm = %q", got)
	}
	for _, dir := range []string{runDir + "/containers", "images/containers"} {
		if entries, _ := os.ReadDir(filepath.Join(a.data, dir)); len(entries) != 0 {
			t.Errorf("rm left %d entries in %s", len(entries), dir)
		}
	}
	if _, errOut, code := a.do("", "logs", "web"); code != 1 || !strings.Contains(errOut, "no container web here (berth-agent ps lists them)") {
		t.Errorf("logs of a removed container: exit %d, stderr %q", code, errOut)
	}
	// rm -f ends a running one.
	if _, errOut, code := a.do("", "run", "-d", "-q", "--name", "gone", fx.Busybox.Tag, "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := a.do("", "rm", "-f", "gone"); code != 0 || out != "gone\n" {
		t.Errorf("rm -f: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// checkLabels: the labels of run -l are on the container, where ps
// filters on them and inspect shows them, as docker's.
func checkLabels(t *testing.T, a *agentCLI) {
	t.Helper()
	for filter, want := range map[string]string{"label=app": "web\n", "label=app=web": "web\n", "label=tier=": "web\n", "label=app=db": "", "label=other": "", "status=exited": ""} {
		if out, errOut, code := a.do("", "ps", "-q", "--filter", filter); code != 0 || out != want {
			t.Errorf("ps -q --filter %s: exit %d, stdout %q, stderr %q; want %q", filter, code, out, errOut, want)
		}
	}
	if _, errOut, code := a.do("", "ps", "--filter", "name=web"); code != 1 || !strings.Contains(errOut, `unknown key "name"; the keys are label and status`) {
		t.Errorf("ps --filter name=web: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code := a.do("", "inspect", "web")
	var got []struct {
		ID     string                  `json:"id"`
		Labels map[string]string       `json:"labels"`
		State  struct{ Status string } `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 1 {
		t.Fatalf("inspect web: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	if want := map[string]string{"app": "web", "tier": ""}; got[0].ID != "web" || !maps.Equal(got[0].Labels, want) || got[0].State.Status != "running" {
		t.Errorf("inspect web = %+v, want labels %v, running", got[0], want)
	}
	if _, errOut, code := a.do("", "inspect", "web", "nope"); code != 1 || !strings.Contains(errOut, "no container nope here") {
		t.Errorf("inspect of a missing container: exit %d, stderr %q", code, errOut)
	}
}

// TestRunInteractive: -i passes stdin; -t gives a terminal; -it on a
// terminal types into the container's terminal, sized as ours.
func TestRunInteractive(t *testing.T) {
	a, fx := newAgentCLI(t)
	img := fx.Busybox.Tag
	if out, errOut, code := a.do("hello there\n", "run", "--rm", "-q", "-i", img, "sh", "-c", `read l; echo "got:$l"`); code != 0 || out != "got:hello there\n" {
		t.Errorf("-i: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := a.do("hello\n", "run", "--rm", "-q", img, "sh", "-c", `read l; echo "read=$?"`); code != 0 || out != "read=1\n" {
		t.Errorf("without -i stdin is empty: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := a.do("", "run", "--rm", "-q", "-t", img, "tty"); code != 0 || !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("-t: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	ptm, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptm.Close()
	if err := pty.Setsize(ptm, &pty.Winsize{Rows: 41, Cols: 101}); err != nil {
		t.Fatal(err)
	}
	cmd := a.cmd("run", "--rm", "-q", "-it", img, "sh", "-c", `stty size; read l; echo "got:$l"`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var seen lockedBuffer
	done := make(chan struct{})
	go func() { defer close(done); _, _ = io.Copy(&seen, ptm) }() // ends with EIO once the run exits
	await.True(t, 20*time.Second, func() bool { return strings.Contains(seen.String(), "41 101") }, "the container's terminal is 41x101")
	if _, err := ptm.Write([]byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(cmd, 20*time.Second); err != nil {
		t.Fatalf("-it: %v; terminal showed %q", err, seen.String())
	}
	<-done
	if got := seen.String(); !strings.Contains(got, "got:typed") {
		t.Errorf("-it: terminal showed %q, want got:typed", got)
	}
}

// lockedBuffer is a buffer one goroutine writes while another reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitExit waits for cmd with a deadline, killing it past that.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		return errors.New("did not exit in time")
	}
}

// TestRunPublishesPorts: -p HOST:CONTAINER forwards a host port into the
// container for as long as the foreground run lasts.
func TestRunPublishesPorts(t *testing.T) {
	a, fx := newAgentCLI(t)
	cmd := a.cmd("run", "--rm", "-p", "0:8080", fx.Busybox.Tag, "sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	published := regexp.MustCompile(`publishing port (\d+)/tcp of the host \(all addresses\) to the container's 8080`)
	var port string
	sc := bufio.NewScanner(stderr)
	for port == "" && sc.Scan() {
		if m := published.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if port == "" {
		_ = cmd.Process.Kill()
		t.Fatal("run -p did not say which port it published")
	}
	var body string
	await.NoError(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/index.html")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	}, "GET through the published port")
	if body != "hello\n" {
		t.Errorf("through -p: %q, want hello", body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(cmd, 30*time.Second); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %s still open after the run ended", port)
	}
}

// TestRunSuggestsInsecureRegistry: a registry answering HTTPS with plain
// HTTP gets the flag that speaks HTTP to it named in the error.
func TestRunSuggestsInsecureRegistry(t *testing.T) {
	a, _ := newAgentCLI(t)
	// 127.0.0.2: the client would speak plain HTTP to 127.0.0.1 unasked.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	_, errOut, code := a.do("", "run", "--rm", "-q", l.Addr().String()+"/busybox", "true")
	if want := "add --insecure-registry " + l.Addr().String(); code != 125 || !strings.Contains(errOut, want) {
		t.Errorf("plain-HTTP registry: exit %d, stderr %q; want 125 and %q", code, errOut, want)
	}
}
