package testimage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image is one image pushed to a Registry.
type Image struct {
	Tag      string // "127.0.0.1:PORT/app:v1"
	Digest   string // manifest digest, "sha256:..."
	ByDigest string // "127.0.0.1:PORT/app@sha256:..."
}

// Fixture is a running registry holding the standard test images.
type Fixture struct {
	Registry *Registry
	Busybox  Image // busybox:latest
	AppV1    Image // app:v1, APP_VERSION=v1
	AppV2    Image // app:v2, APP_VERSION=v2
}

// Start starts a registry and pushes busybox:latest, app:v1 and app:v2 to
// it. The caller must Close the fixture. log may be nil.
func Start(ctx context.Context, log *slog.Logger) (*Fixture, error) {
	return StartAt(ctx, "127.0.0.1:0", log)
}

// StartAt is Start with the registry on addr, e.g. a test bridge's address
// that hosts in network namespaces can reach.
func StartAt(ctx context.Context, addr string, log *slog.Logger) (*Fixture, error) {
	r, err := StartRegistryAt(ctx, addr, log)
	if err != nil {
		return nil, err
	}
	f := &Fixture{Registry: r}
	if err := f.pushAll(ctx); err != nil {
		return nil, errors.Join(err, r.Close())
	}
	return f, nil
}

func (f *Fixture) pushAll(ctx context.Context) error {
	bb, err := Busybox()
	if err != nil {
		return err
	}
	if f.Busybox, err = f.push(ctx, "busybox:latest", bb); err != nil {
		return err
	}
	for _, v := range []struct {
		version string
		dst     *Image
	}{{"v1", &f.AppV1}, {"v2", &f.AppV2}} {
		img, err := App(ctx, v.version)
		if err != nil {
			return err
		}
		if *v.dst, err = f.push(ctx, "app:"+v.version, img); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fixture) push(ctx context.Context, repoTag string, img v1.Image) (Image, error) {
	ref, digest, err := f.Registry.Push(ctx, repoTag, img)
	if err != nil {
		return Image{}, err
	}
	return Image{Tag: ref, Digest: digest, ByDigest: f.Registry.DigestRef(repoTag, digest)}, nil
}

// Close stops the fixture's registry.
func (f *Fixture) Close() error { return f.Registry.Close() }

// TB is the part of testing.TB that Serve uses; *testing.T and *testing.B
// satisfy it. It is an interface of our own so that this package does not
// import "testing" and stays usable from the demo command.
type TB interface {
	Helper()
	Context() context.Context
	Cleanup(func())
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Serve is Start for tests: it fails t if the fixture cannot start and
// closes the fixture when t ends.
func Serve(t TB) *Fixture {
	t.Helper()
	f, err := Start(t.Context(), nil)
	if err != nil {
		t.Fatalf("testimage: %v", fmt.Errorf("start fixture: %w", err))
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("testimage: %v", err)
		}
	})
	return f
}
