package image

import (
	"errors"
	"os"
	"testing"
)

// TestGetFollowsPullPolicy: missing and never answer from the store without
// asking the registry, always asks it, and an image whose layers went
// missing is not "here".
func TestGetFollowsPullPolicy(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "a:v1", tarLayer(t, file("a", "a")))
	reg.reset()
	s := newStore(t, testRoot(t), nil)
	ref := reg.Host + "/a:v1"

	if _, err := s.Get(ctxT(t), ref, PullNever, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("never, not pulled: %v; want ErrNotFound", err)
	}
	if reg.requests("") != 0 {
		t.Fatalf("never asked the registry %d times", reg.requests(""))
	}
	img, err := s.Get(ctxT(t), ref, PullMissing, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []PullPolicy{PullMissing, PullNever} {
		reg.reset()
		got, err := s.Get(ctxT(t), ref, p, nil)
		if err != nil || got.Digest != img.Digest || reg.requests("") != 0 {
			t.Errorf("%s, pulled: %v, %v after %d requests; want the image and none", p, got.Digest, err, reg.requests(""))
		}
	}
	reg.reset()
	if _, err := s.Get(ctxT(t), ref, PullAlways, nil); err != nil || reg.requests("/manifests/") == 0 {
		t.Errorf("always: %v after %d manifest requests; want at least one", err, reg.requests("/manifests/"))
	}

	if err := os.RemoveAll(s.layerDir(hexOf(img.Layers[0]))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctxT(t), ref, PullNever, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("never, layer gone: %v; want ErrNotFound", err)
	}
	if _, err := s.Get(ctxT(t), ref, PullMissing, nil); err != nil {
		t.Errorf("missing, layer gone: %v; want a pull", err)
	}
	if _, err := os.Stat(s.layerDir(hexOf(img.Layers[0]))); err != nil {
		t.Errorf("missing did not pull the lost layer again: %v", err)
	}
	if _, err := ParsePullPolicy("sometimes"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParsePullPolicy(sometimes) = %v; want ErrInvalid", err)
	}
}
