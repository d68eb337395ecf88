// Command app is the test application baked into berth's test image (see
// berth/internal/testimage). It is a small HTTP server that tells a caller
// which replica answered and how that replica sees DNS, and whose health a
// test can switch off and on:
//
//	GET  /             JSON: hostname, version ($APP_VERSION), DNS view
//	GET  /?lookup=NAME the same, plus the addresses NAME resolves to
//	GET  /health       200 "ok", or 503 "unhealthy" after POST /health/fail
//	POST /health/fail  make /health answer 503
//	POST /health/ok    make /health answer 200 again
//
// It listens on $HOST:$PORT (HOST empty, PORT 8080 by default; PORT 0 picks
// a free port, which the "listening" log line names) and exits with status
// 0 after SIGTERM or SIGINT. It must stay free of cgo and non-standard
// dependencies so that it builds as one static binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if err := run(log); err != nil {
		log.Error("app failed", "err", err)
		os.Exit(1)
	}
}

// run serves until a termination signal arrives, then shuts down cleanly.
func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	addr := net.JoinHostPort(os.Getenv("HOST"), envOr("PORT", "8080"))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s := newServer(os.Getenv("APP_VERSION"), "/etc/resolv.conf")
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "version", s.version)

	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "reason", "signal")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
