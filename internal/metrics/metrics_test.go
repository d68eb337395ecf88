package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"berth/internal/metrics/metricstest"
)

// TestEndpointServesMetricsAndProfiles: a registry's counters and the
// Go runtime's at /metrics, in the text format Prometheus parses, and a
// heap profile at /debug/pprof/heap; the endpoint stops with its context.
func TestEndpointServesMetricsAndProfiles(t *testing.T) {
	ep, err := Open("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "berth_test_things_total", Help: "Things."})
	ep.Registerer().MustRegister(c)
	c.Add(3)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ep.Run(ctx) }()
	base := "http://" + ep.ln.Addr().String()

	f, err := metricstest.Scrape(t.Context(), base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Value("berth_test_things_total"); v != 3 || !ok {
		t.Errorf("berth_test_things_total = %v (%v), want 3", v, ok)
	}
	if _, ok := f.Value("go_goroutines"); !ok {
		t.Errorf("no go_goroutines in %s", f)
	}
	resp, err := http.Get(base + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Errorf("GET /debug/pprof/heap: %s %.100q", resp.Status, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}
}

func TestOffAndBadAddresses(t *testing.T) {
	ep, err := Open("", slog.New(slog.DiscardHandler))
	if ep != nil || err != nil || ep.Registerer() != nil || ep.Run(t.Context()) != nil {
		t.Fatalf("no address should be metrics off: %v %v", ep, err)
	}
	if _, err := Open("9323", slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--metrics-addr \"9323\": give HOST:PORT") {
		t.Fatalf("a port alone: %v", err)
	}
}
