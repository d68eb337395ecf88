// Package metricstest scrapes a /metrics endpoint in tests and reads it
// back with the Prometheus text parser (prometheus/common/expfmt), as a
// Prometheus server would. Tests only.
package metricstest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Scrape fetches url (http://HOST:PORT/metrics) within 5 s and parses it.
func Scrape(ctx context.Context, url string) (Families, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Families(fams), nil
}

// Value is the value of the sample of family name whose labels include
// labels ("k", "v", ...): a counter's or gauge's value, a histogram's
// sample count. ok is false when there is no such sample.
func (f Families) Value(name string, labels ...string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// Sum is the sum of a histogram family's first sample (0 when none).
func (f Families) Sum(name string) float64 {
	if fam := f[name]; fam != nil && len(fam.GetMetric()) > 0 {
		return fam.GetMetric()[0].GetHistogram().GetSampleSum()
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if have[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// String lists the families' names, for failure messages.
func (f Families) String() string {
	var names []string
	for n := range f {
		names = append(names, n)
	}
	return strings.Join(names, " ")
}
