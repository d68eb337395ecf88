package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPullByTagAndDigest(t *testing.T) {
	reg := newRegistry(t)
	img := reg.push(t, "app:v1",
		tarLayer(t, dir("bin/"), file("bin/app", "#!/bin/sh\necho hi\n")),
		tarLayer(t, dir("srv/"), file("srv/data.txt", "hello")))
	digest, _ := img.Digest()
	s := newStore(t, testRoot(t), nil)

	var mu sync.Mutex
	var events []Progress
	got, err := s.Pull(ctxT(t), reg.Host+"/app:v1", func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest.String() || got.Manifest != digest.String() {
		t.Errorf("digest = %s / %s, want %s", got.Digest, got.Manifest, digest)
	}
	if got.Ref != reg.Host+"/app:v1" || len(got.Layers) != 2 || got.Size != int64(len("#!/bin/sh\necho hi\n")+len("hello")) {
		t.Errorf("image = %+v", got)
	}
	c := got.Config
	if !slices.Equal(c.Entrypoint, []string{"/bin/app"}) || !slices.Equal(c.Cmd, []string{"--serve"}) ||
		c.WorkingDir != "/srv" || c.User != "1000:1000" || c.StopSignal != "SIGINT" ||
		!slices.Equal(c.ExposedPorts, []string{"53/udp", "8080/tcp"}) || !slices.Contains(c.Env, "MODE=test") {
		t.Errorf("config = %+v", c)
	}
	for _, l := range got.Layers {
		if _, err := os.Stat(filepath.Join(s.layerDir(hexOf(l)), "fs")); err != nil {
			t.Errorf("layer %s not unpacked: %v", l, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(s.layerDir(hexOf(got.Layers[1])), "fs", "srv", "data.txt"))
	if err != nil || string(b) != "hello" {
		t.Errorf("unpacked file = %q, %v", b, err)
	}
	checkProgress(t, events, 2)

	// By digest, already here: no network at all.
	reg.reset()
	byDigest := reg.Host + "/app@" + digest.String()
	again, err := s.Pull(ctxT(t), byDigest, nil)
	if err != nil || again.Digest != got.Digest {
		t.Fatalf("pull by digest = %+v, %v", again, err)
	}
	if n := reg.requests(""); n != 0 {
		t.Errorf("pull by digest of a present image made %d requests, want 0", n)
	}
	// By tag, already here: one manifest request, no blobs.
	if _, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	if m, bl := reg.requests("/manifests/"), reg.requests("/blobs/"); m != 1 || bl != 0 {
		t.Errorf("pull by tag of a present image: %d manifest and %d blob requests, want 1 and 0", m, bl)
	}
	// By digest into a fresh store: a real pull.
	s2 := newStore(t, testRoot(t), nil)
	if got2, err := s2.Pull(ctxT(t), byDigest, nil); err != nil || got2.Digest != got.Digest {
		t.Fatalf("fresh pull by digest = %+v, %v", got2, err)
	}
}

// checkProgress wants every layer to end Done with all its bytes.
func checkProgress(t *testing.T, events []Progress, layers int) {
	t.Helper()
	done := map[int]Progress{}
	for _, p := range events {
		if p.Done {
			done[p.LayerIndex] = p
		}
	}
	if len(done) != layers {
		t.Fatalf("progress: %d layers done, want %d (events %+v)", len(done), layers, events)
	}
	for i, p := range done {
		if p.BytesDone != p.BytesTotal || p.BytesTotal == 0 || p.Layers != layers || p.Layer == "" {
			t.Errorf("layer %d final progress = %+v", i, p)
		}
	}
}

func TestPullUnknownImage(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("a", "a")))
	s := newStore(t, testRoot(t), nil)
	for _, ref := range []string{reg.Host + "/nope:latest", reg.Host + "/app:v2"} {
		_, err := s.Pull(ctxT(t), ref, nil)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("pull %s: err = %v, want ErrNotFound", ref, err)
		}
		want := fmt.Sprintf("image %q not found in registry %s", ref, reg.Host)
		if err.Error() != want {
			t.Errorf("message = %q, want %q", err, want)
		}
	}
	if _, err := s.Pull(ctxT(t), "UPPER/case:x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad reference: err = %v, want ErrInvalid", err)
	}
}

func TestPullUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	s := newStore(t, testRoot(t), nil)
	start := time.Now()
	_, err = s.Pull(ctxT(t), host+"/app:v1", nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	t.Logf("error: %v", err)
	if msg := err.Error(); !strings.HasPrefix(msg, "registry "+host+" unreachable: ") || !strings.Contains(msg, "connection refused") {
		t.Errorf("message = %q", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to give up on a refused connection", d)
	}
}

func TestPullBasicAuth(t *testing.T) {
	reg := newRegistry(t)
	reg.user, reg.pass = "alice", "s3cret"
	reg.push(t, "private:v1", tarLayer(t, file("secret", "42")))
	ref := reg.Host + "/private:v1"
	for _, tc := range []struct {
		name string
		pass string
		ok   bool
	}{{"right", "s3cret", true}, {"wrong", "guess", false}, {"none", "", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, testRoot(t), func(c *Config) {
				c.Auth = func(r string) (string, string, bool) {
					return "alice", tc.pass, r == reg.Host && tc.pass != ""
				}
			})
			_, err := s.Pull(ctxT(t), ref, nil)
			if tc.ok && err != nil {
				t.Fatalf("pull with right credentials: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
			if err != nil {
				t.Logf("error: %v", err)
			}
			if !tc.ok && !strings.Contains(err.Error(), "registry "+reg.Host+" refused access") {
				t.Errorf("message = %q", err)
			}
		})
	}
}

// TestPullWithBasicAuth: credentials given to one pull reach the registry,
// take the place of Config.Auth, and are neither logged nor written under
// the store's root.
func TestPullWithBasicAuth(t *testing.T) {
	reg := newRegistry(t)
	reg.user, reg.pass = "alice", "per-pull-s3cret"
	reg.push(t, "private:v1", tarLayer(t, file("secret", "42")))
	ref := reg.Host + "/private:v1"
	for _, tc := range []struct {
		name string
		opts []PullOption
		ok   bool
	}{
		{"right", []PullOption{WithBasicAuth("alice", "per-pull-s3cret")}, true},
		{"wrong", []PullOption{WithBasicAuth("alice", "guess")}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			root := testRoot(t)
			s := newStore(t, root, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				// The store's own credentials are wrong: a pull's win.
				c.Auth = func(string) (string, string, bool) { return "alice", "stale", true }
			})
			_, err := s.Pull(ctxT(t), ref, nil, tc.opts...)
			if tc.ok && err != nil {
				t.Fatalf("pull with right credentials: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
			if strings.Contains(logs.String(), "per-pull-s3cret") {
				t.Errorf("the password is in the store's log:\n%s", logs.String())
			}
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("per-pull-s3cret")) {
						t.Errorf("the password is written to %s", p)
					}
				}
				return nil
			})
		})
	}
}

func TestPullDigestMismatch(t *testing.T) {
	reg := newRegistry(t)
	img := reg.push(t, "app:v1", tarLayer(t, file("a", strings.Repeat("payload ", 4096))))
	layers, _ := img.Layers()
	dig, _ := layers[0].Digest()
	reg.tamper = dig.String()
	root := testRoot(t)
	s := newStore(t, root, nil)
	_, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	t.Logf("error: %v", err)
	assertNothingLeft(t, s)
}

// assertNothingLeft wants no layer, temp dir or image record in s.
func assertNothingLeft(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"layers", "tmp", "l", "containers"} {
		if ents := dirEntries(t, s.path(d)); len(ents) > 0 {
			t.Errorf("%s/ holds %v after a failed pull", d, ents)
		}
	}
	if imgs := s.Images(); len(imgs) > 0 {
		t.Errorf("images recorded after a failed pull: %+v", imgs)
	}
}

func TestPullRejectsEscapingLayer(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "evil:v1", tarLayer(t, file("ok", "fine"), file("../../escaped", "gotcha")))
	root := testRoot(t)
	s := newStore(t, root, nil)
	_, err := s.Pull(ctxT(t), reg.Host+"/evil:v1", nil)
	if !errors.Is(err, ErrBadLayer) {
		t.Fatalf("err = %v, want ErrBadLayer", err)
	}
	if !strings.Contains(err.Error(), `"../../escaped" points outside the layer`) {
		t.Errorf("message = %q", err)
	}
	assertNothingLeft(t, s)
	filepath.WalkDir(filepath.Dir(root), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "escaped" {
			t.Errorf("extraction wrote %s", p)
		}
		return nil
	})
}

func TestConcurrentPullsShareOneDownload(t *testing.T) {
	reg := newRegistry(t)
	img := reg.push(t, "app:v1", tarLayer(t, file("big", strings.Repeat("x", 1<<20))), tarLayer(t, file("small", "s")))
	layers, _ := img.Layers()
	reg.reset()
	s := newStore(t, testRoot(t), nil)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	digests := make([]string, 10)
	for i := range 10 {
		wg.Go(func() {
			got, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
			errs[i], digests[i] = err, got.Digest
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if digests[i] != digests[0] {
			t.Errorf("pull %d got %s, pull 0 got %s", i, digests[i], digests[0])
		}
	}
	for _, l := range layers {
		d, _ := l.Digest()
		if n := reg.requests("GET /v2/app/blobs/" + d.String()); n != 1 {
			t.Errorf("layer %s downloaded %d times, want 1", d, n)
		}
	}
}

func TestPullCancelledCallerDoesNotFailOthers(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("f", strings.Repeat("y", 1<<20))))
	s := newStore(t, testRoot(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Pull(ctx, reg.Host+"/app:v1", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: err = %v", err)
	}
	if _, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil); err != nil {
		t.Fatalf("pull after a cancelled one: %v", err)
	}
}

func TestPullWrongDiffID(t *testing.T) {
	reg := newRegistry(t)
	img := buildImage(t, tarLayer(t, file("a", "a")))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0].Hex = strings.Repeat("ab", 32)
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Host + "/lying:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, testRoot(t), nil)
	_, err = s.Pull(ctxT(t), ref.Name(), nil)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "the image config says sha256:abab") {
		t.Fatalf("err = %v, want ErrDigestMismatch about the diffID", err)
	}
	t.Logf("error: %v", err)
	assertNothingLeft(t, s)
}
