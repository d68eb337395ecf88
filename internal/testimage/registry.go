package testimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an in-memory OCI distribution registry served over plain
// HTTP, by default on a random 127.0.0.1 port. Everything pushed to it is lost on
// Close.
type Registry struct {
	addr    string
	srv     *http.Server
	done    chan struct{}
	serveMu sync.Mutex
	err     error // why Serve returned, if not because of Close
}

// StartRegistry starts a registry on 127.0.0.1 with a port the kernel
// picks. Request logs go to log at debug level; log may be nil. The
// registry serves until Close.
func StartRegistry(ctx context.Context, log *slog.Logger) (*Registry, error) {
	return StartRegistryAt(ctx, "127.0.0.1:0", log)
}

// StartRegistryAt is StartRegistry listening on addr ("host:port", port 0
// for any). Use it when pullers run in other network namespaces and cannot
// reach the host's loopback, e.g. with the address of a test bridge.
func StartRegistryAt(ctx context.Context, addr string, log *slog.Logger) (*Registry, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start registry on %s: %w", addr, err)
	}
	r := &Registry{
		addr: ln.Addr().String(),
		srv: &http.Server{
			Handler:           registry.New(registry.Logger(requestLogger(log))),
			ReadHeaderTimeout: 10 * time.Second,
		},
		done: make(chan struct{}),
	}
	go r.serve(ln)
	return r, nil
}

// requestLogger adapts log to the *log.Logger the registry package wants,
// or discards the lines when log is nil.
func requestLogger(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return slog.NewLogLogger(l.With("component", "testimage-registry").Handler(), slog.LevelDebug)
}

func (r *Registry) serve(ln net.Listener) {
	defer close(r.done)
	err := r.srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		r.serveMu.Lock()
		r.err = err
		r.serveMu.Unlock()
	}
}

// Addr is the registry's host and port, "127.0.0.1:PORT": the registry
// part of image references. Pullers must use plain HTTP (name.Insecure;
// go-containerregistry does so by itself for loopback and RFC 1918
// addresses).
func (r *Registry) Addr() string { return r.addr }

// Close stops the registry, dropping open connections, and waits for its
// server to end. It returns why serving failed, if it failed before.
func (r *Registry) Close() error {
	cerr := r.srv.Close()
	<-r.done
	r.serveMu.Lock()
	defer r.serveMu.Unlock()
	if r.err != nil {
		return fmt.Errorf("registry %s: serve: %w", r.addr, r.err)
	}
	if cerr != nil {
		return fmt.Errorf("registry %s: close: %w", r.addr, cerr)
	}
	return nil
}

// Push uploads img as repoTag ("busybox:latest", "app:v1"; a missing tag
// means "latest") and returns the full tag reference
// ("127.0.0.1:PORT/busybox:latest") and the manifest digest
// ("sha256:..."). Pull by digest with DigestRef.
func (r *Registry) Push(ctx context.Context, repoTag string, img v1.Image) (ref string, digest string, err error) {
	if strings.Contains(repoTag, "@") || strings.HasPrefix(repoTag, r.addr) {
		return "", "", fmt.Errorf("push %q: want a repository and optional tag without registry or digest, like \"app:v1\"", repoTag)
	}
	tag, err := name.NewTag(r.addr+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", "", fmt.Errorf("push %q: %w", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", "", fmt.Errorf("push %s: digest: %w", tag, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return "", "", fmt.Errorf("push %s: %w", tag, err)
	}
	return tag.Name(), d.String(), nil
}

// DigestRef is the by-digest reference of repo in this registry:
// "127.0.0.1:PORT/repo@sha256:...". repo may carry a tag, which is dropped.
func (r *Registry) DigestRef(repo, digest string) string {
	if i := strings.LastIndex(repo, ":"); i >= 0 {
		repo = repo[:i]
	}
	return r.addr + "/" + repo + "@" + digest
}
