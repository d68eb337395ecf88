package testimage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listenLine = regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)

// appProc is the app running on the host, outside any container.
type appProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	wait func() error // cmd.Wait, once
	addr string       // listening address, "127.0.0.1:PORT"
}

// runApp starts cmd (the app binary, possibly chrooted), kills it when t
// ends and waits for its "listening" log line.
func runApp(t *testing.T, cmd *exec.Cmd) *appProc {
	t.Helper()
	p := &appProc{cmd: cmd, out: &lockedBuffer{}, wait: sync.OnceValue(cmd.Wait)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start app: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // harmless once it has exited
		_ = p.wait()
	})
	await.True(t, 10*time.Second, func() bool {
		m := listenLine.FindStringSubmatch(p.out.String())
		if m != nil {
			p.addr = m[1]
		}
		return m != nil
	}, "app logs a listening line; output so far:\n%s", p.out)
	return p
}

// startApp runs the app binary on the host on a free loopback port.
func startApp(t *testing.T, version string) *appProc {
	t.Helper()
	bin, err := AppBinary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=0", "APP_VERSION=" + version}
	return runApp(t, cmd)
}

// url is the app's address for path.
func (p *appProc) url(path string) string { return "http://" + p.addr + path }

// terminate sends SIGTERM and fails t unless the app exits with status 0
// within ten seconds.
func (p *appProc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- p.wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("app after SIGTERM: %v, want exit status 0; output:\n%s", err, p.out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("app still running 10s after SIGTERM; output:\n%s", p.out)
	}
}

func request(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(body)
}

// hostNameservers parses the host's resolv.conf the way the app should.
func hostNameservers(t *testing.T) []string {
	t.Helper()
	ns := []string{}
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return ns
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "nameserver" {
			ns = append(ns, fs[1])
		}
	}
	return ns
}

func TestAppAnswersWithHostnameVersionAndDNS(t *testing.T) {
	app := startApp(t, "v-test")
	code, body := request(t, "GET", app.url("/?lookup=localhost"))
	if code != http.StatusOK {
		t.Fatalf("GET /: %d %s", code, body)
	}
	var got struct {
		Hostname string `json:"hostname"`
		Version  string `json:"version"`
		DNS      struct {
			Nameservers []string `json:"nameservers"`
			Lookup      string   `json:"lookup"`
			Addresses   []string `json:"addresses"`
			Error       string   `json:"error"`
		} `json:"dns"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /: %v in %s", err, body)
	}
	host, _ := os.Hostname()
	if got.Hostname != host || got.Version != "v-test" {
		t.Errorf("hostname %q version %q, want %q and v-test", got.Hostname, got.Version, host)
	}
	if want := hostNameservers(t); !slices.Equal(got.DNS.Nameservers, want) {
		t.Errorf("nameservers %q, want %q from /etc/resolv.conf", got.DNS.Nameservers, want)
	}
	if got.DNS.Lookup != "localhost" || !slices.Contains(got.DNS.Addresses, "127.0.0.1") {
		t.Errorf("lookup %q gave %q (error %q), want 127.0.0.1 among them", got.DNS.Lookup, got.DNS.Addresses, got.DNS.Error)
	}
	if code, _ := request(t, "GET", app.url("/nothing")); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", code)
	}
}

func TestAppHealthFlips(t *testing.T) {
	app := startApp(t, "v1")
	steps := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/health", 200, "ok\n"},
		{"POST", "/health/fail", 200, ""},
		{"GET", "/health", 503, ""},
		{"GET", "/health", 503, ""},
		{"POST", "/health/ok", 200, ""},
		{"GET", "/health", 200, "ok\n"},
	}
	for i, s := range steps {
		code, body := request(t, s.method, app.url(s.path))
		if code != s.code || (s.body != "" && body != s.body) {
			t.Errorf("step %d %s %s: %d %q, want %d %q", i, s.method, s.path, code, body, s.code, s.body)
		}
	}
}

func TestAppExitsCleanlyOnSIGTERM(t *testing.T) {
	app := startApp(t, "v1")
	if code, _ := request(t, "GET", app.url("/health")); code != http.StatusOK {
		t.Fatalf("GET /health: %d before SIGTERM", code)
	}
	app.terminate(t)
	if !strings.Contains(app.out.String(), "msg=\"shutting down\"") {
		t.Errorf("no shutdown log line in:\n%s", app.out)
	}
}
