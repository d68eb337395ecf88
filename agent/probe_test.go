package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"berth/agent/image"
	pb "berth/proto/berth/v1"
)

// The probes dial from inside a network namespace; the test's own
// (/proc/self/ns/net) stands in for a container's, which needs root.
func selfNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("entering a network namespace needs root")
	}
	return "/proc/self/ns/net"
}

func port(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func TestProbeHTTP(t *testing.T) {
	ns := selfNetns(t)
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || !healthy {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	p := port(t, srv.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, out := probeHTTP(ctx, ns, p, "/health"); !ok {
		t.Fatalf("healthy server: probe failed: %s", out)
	}
	healthy = false
	ok, out := probeHTTP(ctx, ns, p, "/health")
	if ok || !strings.Contains(out, "503") || !strings.Contains(out, "unhealthy") {
		t.Fatalf("503: ok=%v out=%q, want a failure naming the status and body", ok, out)
	}
}

func TestProbeTCP(t *testing.T) {
	ns := selfNetns(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(t, l.Addr().String())
	ctx := context.Background()
	if ok, out := probeTCP(ctx, ns, p); !ok {
		t.Fatalf("listening port: %s", out)
	}
	l.Close()
	if ok, out := probeTCP(ctx, ns, p); ok || !strings.Contains(out, "connect 127.0.0.1:") {
		t.Fatalf("closed port: ok=%v out=%q", ok, out)
	}
}

func TestHealthConfigProbes(t *testing.T) {
	hc := healthConfig(&pb.HealthCheck{HttpPort: 8080, StartInterval: durationpb.New(time.Second), StartPeriod: durationpb.New(time.Minute)})
	if hc == nil || hc.httpPort != 8080 || hc.httpPath != "/" || len(hc.args) != 0 || hc.startInterval != time.Second {
		t.Fatalf("http probe config: %+v", hc)
	}
	if hc := healthConfig(&pb.HealthCheck{TcpPort: 5432}); hc == nil || hc.tcpPort != 5432 {
		t.Fatalf("tcp probe config: %+v", hc)
	}
}

// TestImageHealthcheck: the image's HEALTHCHECK runs unless the spec has a
// check of its own; the spec's timings win where set.
func TestImageHealthcheck(t *testing.T) {
	img := &image.HealthConfig{Test: []string{"CMD", "/app", "-check"}, Interval: 5 * time.Second, Retries: 4}
	got := withImageHealth(&pb.HealthCheck{Timeout: durationpb.New(time.Second)}, img)
	if strings.Join(got.GetTest(), " ") != "CMD /app -check" || got.GetInterval().AsDuration() != 5*time.Second ||
		got.GetTimeout().AsDuration() != time.Second || got.GetRetries() != 4 {
		t.Fatalf("image check under spec timings: %v", got)
	}
	if got := withImageHealth(nil, img); strings.Join(got.GetTest(), " ") != "CMD /app -check" {
		t.Fatalf("no spec check: %v", got)
	}
	none := &pb.HealthCheck{Test: []string{"NONE"}}
	if got := withImageHealth(none, img); healthConfig(got) != nil {
		t.Fatalf("--no-healthcheck still runs the image's check: %v", got)
	}
	http := &pb.HealthCheck{HttpPort: 8080}
	if got := withImageHealth(http, img); got.GetHttpPort() != 8080 || len(got.GetTest()) != 0 {
		t.Fatalf("the spec's HTTP probe gave way to the image's: %v", got)
	}
}

// TestStartInterval: during the start period the check runs every start
// interval, not every interval: with an hour's interval, the container
// still turns healthy at once.
func TestStartInterval(t *testing.T) {
	ctr := newFakeExec().add("c1")
	hc := &healthCheck{args: []string{"true"}, interval: time.Hour, timeout: time.Second, retries: 3,
		startPeriod: time.Hour, startInterval: 10 * time.Millisecond}
	m := startMonitor(context.Background(), ctr, hc, pb.ContainerStatus_HEALTH_STARTING, time.Now, slog.New(slog.DiscardHandler))
	defer m.stop()
	select {
	case h := <-m.health:
		if h != pb.ContainerStatus_HEALTH_HEALTHY {
			t.Fatalf("health %v, want healthy", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no probe within 5s: the start interval was not used")
	}
}
