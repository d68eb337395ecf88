package metrics

import (
	"context"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint is a process's metrics address, opened, and the registry it
// serves. A nil *Endpoint is metrics turned off: it registers and serves
// nothing.
type Endpoint struct {
	Registry *prometheus.Registry
	ln       net.Listener
	log      *slog.Logger
}

// Open listens on addr with a new registry; "" (the default: off)
// returns nil and no error.
func Open(addr string, log *slog.Logger) (*Endpoint, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := Listen(addr)
	if err != nil {
		return nil, err
	}
	return &Endpoint{Registry: NewRegistry(), ln: ln, log: log}, nil
}

// Registerer is the registry to count into, nil when metrics are off (an
// untyped nil, which parts test for).
func (e *Endpoint) Registerer() prometheus.Registerer {
	if e == nil {
		return nil
	}
	return e.Registry
}

// Run serves /metrics and /debug/pprof/ until ctx ends; with metrics off
// it returns at once.
func (e *Endpoint) Run(ctx context.Context) error {
	if e == nil {
		return nil
	}
	return Serve(ctx, e.ln, Handler(e.Registry, e.log), e.log)
}

// Close releases the address of an endpoint that will not Run.
func (e *Endpoint) Close() {
	if e != nil {
		e.ln.Close()
	}
}
