package image

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// pushIndex pushes a multi-platform index with one image per architecture.
func pushIndex(t *testing.T, reg *testRegistry, repoTag string, archs map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for arch, img := range archs {
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	ref, err := name.ParseReference(reg.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestPullPicksPlatformFromIndex(t *testing.T) {
	reg := newRegistry(t)
	mine := buildImage(t, tarLayer(t, file("arch", runtime.GOARCH)))
	other := buildImage(t, tarLayer(t, file("arch", "other")))
	idx := pushIndex(t, reg, "multi:v1", map[string]v1.Image{runtime.GOARCH: mine, "s390x": other})
	s := newStore(t, testRoot(t), nil)
	got, err := s.Pull(ctxT(t), reg.Host+"/multi:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	mineDigest, _ := mine.Digest()
	if got.Digest != idxDigest.String() || got.Manifest != mineDigest.String() {
		t.Errorf("digest %s manifest %s, want index %s and platform manifest %s", got.Digest, got.Manifest, idxDigest, mineDigest)
	}
	// Pinned by the index digest, it is found locally.
	reg.reset()
	if _, err := s.Pull(ctxT(t), reg.Host+"/multi@"+idxDigest.String(), nil); err != nil || reg.requests("") != 0 {
		t.Errorf("pull by index digest: %v, %d requests", err, reg.requests(""))
	}

	pushIndex(t, reg, "foreign:v1", map[string]v1.Image{"s390x": other})
	_, err = s.Pull(ctxT(t), reg.Host+"/foreign:v1", nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "has no linux/"+runtime.GOARCH+" variant") {
		t.Errorf("index without our platform: err = %v", err)
	}
}

func TestInsecureRegistriesUseHTTP(t *testing.T) {
	s := newStore(t, testRoot(t), func(c *Config) { c.Insecure = []string{"registry.internal:5000"} })
	for ref, scheme := range map[string]string{
		"registry.internal:5000/app:v1": "http",
		"registry.example:5000/app:v1":  "https",
		"localhost:5000/app:v1":         "http",
		"127.0.0.1:5000/app:v1":         "http",
	} {
		r, err := s.parseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Context().Registry.Scheme(); got != scheme {
			t.Errorf("%s: scheme %s, want %s", ref, got, scheme)
		}
	}
}

func TestPullReadOnlyRootIsPermissionDenied(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("a", "a")))
	root := testRoot(t)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	s := newStore(t, root, nil)
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "permission denied under "+root) {
		t.Fatalf("err = %v, want ErrPermission naming %s", err, root)
	}
	t.Logf("error: %v", err)
	assertNothingLeft(t, s)
}
