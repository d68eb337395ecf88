package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

func TestLayerLimitsFromConfig(t *testing.T) {
	for _, tc := range []struct {
		size, entries int64
		want          limits
	}{
		{0, 0, limits{bytes: DefaultMaxLayerSize, entries: DefaultMaxLayerEntries}},
		{5, 7, limits{bytes: 5, entries: 7}},
		{-1, -1, limits{}},
	} {
		got := Config{MaxLayerSize: tc.size, MaxLayerEntries: tc.entries}.limits()
		if got != tc.want {
			t.Errorf("limits of size %d, entries %d = %+v, want %+v", tc.size, tc.entries, got, tc.want)
		}
	}
}

// layerDigest returns the digest of image img's layer i, as errors name it.
func layerDigest(t *testing.T, img v1.Image, i int) string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[i].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestLayerSizeLimit(t *testing.T) {
	reg := newRegistry(t)
	const limit = 1 << 20
	// 64 MiB of zeros is 64 KiB gzipped: a small bomb, stopped before any
	// of it is written.
	bomb := reg.push(t, "bomb:v1", tarLayer(t, file("small", "x"), file("zeros", strings.Repeat("\x00", 64<<20))))
	reg.push(t, "fits:v1", tarLayer(t, file("a", strings.Repeat("a", limit-10)), file("b", strings.Repeat("b", 10))))
	s := newStore(t, testRoot(t), func(c *Config) { c.MaxLayerSize = limit })

	_, err := s.Pull(ctxT(t), reg.Host+"/bomb:v1", nil)
	if !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("err = %v, want ErrLayerTooLarge", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{layerDigest(t, bomb, 0), "1048576 bytes (1.0 MiB)", "--max-layer-size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertNothingLeft(t, s)

	if _, err := s.Pull(ctxT(t), reg.Host+"/fits:v1", nil); err != nil {
		t.Fatalf("a layer of exactly the limit: %v", err)
	}
}

func TestLayerEntryLimit(t *testing.T) {
	reg := newRegistry(t)
	const limit = 50
	many := func(n int) []byte {
		var es []entry
		es = append(es, dir("d"))
		for i := 1; i < n; i++ {
			es = append(es, file(fmt.Sprintf("d/f%03d", i), "x"))
		}
		return tarLayer(t, es...)
	}
	over := reg.push(t, "many:v1", tarLayer(t, file("base", "x")), many(limit+1))
	reg.push(t, "enough:v1", many(limit))
	s := newStore(t, testRoot(t), func(c *Config) { c.MaxLayerEntries = limit })

	_, err := s.Pull(ctxT(t), reg.Host+"/many:v1", nil)
	if !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("err = %v, want ErrLayerTooLarge", err)
	}
	t.Logf("error: %v", err)
	for _, want := range []string{layerDigest(t, over, 1), "50 entries", "--max-layer-entries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	assertNothingLeft(t, s) // the base layer that fitted is gone too

	if _, err := s.Pull(ctxT(t), reg.Host+"/enough:v1", nil); err != nil {
		t.Fatalf("a layer of exactly the limit: %v", err)
	}
}

// tmpfsRoot mounts a small tmpfs (mount options opts) as a store root
// under the test's own dir; it is unmounted at the end of the test.
func tmpfsRoot(t *testing.T, opts string) string {
	t.Helper()
	needRoot(t)
	root := testRoot(t)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	return root
}

func noise(n int, seed int) string {
	b := make([]byte, n)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return string(b)
}

// TestNoSpaceLeavesNothing fills a small tmpfs store in the ways a disk
// fills during a pull: bytes in a later layer after earlier ones fitted,
// bytes of small files written by the background workers, and inodes. Each
// pull fails with ErrNoSpace and leaves no layer, temp dir or record.
func TestNoSpaceLeavesNothing(t *testing.T) {
	reg := newRegistry(t)
	var small []entry
	for i := range 64 {
		small = append(small, file(fmt.Sprintf("f%02d", i), noise(32<<10, i)))
	}
	var tiny []entry
	for i := range 200 {
		tiny = append(tiny, file(fmt.Sprintf("t%03d", i), "x"))
	}
	reg.push(t, "later:v1", tarLayer(t, file("a", "first layer fits")), tarLayer(t, file("big", noise(4<<20, 1))))
	reg.push(t, "workers:v1", tarLayer(t, small...))
	reg.push(t, "inodes:v1", tarLayer(t, tiny...))
	for _, tc := range []struct{ image, opts string }{
		{"later:v1", "size=2m"},
		{"workers:v1", "size=1m"},
		{"inodes:v1", "nr_inodes=64"},
	} {
		t.Run(strings.TrimSuffix(tc.image, ":v1"), func(t *testing.T) {
			root := tmpfsRoot(t, tc.opts)
			s := newStore(t, root, nil)
			_, err := s.Pull(ctxT(t), reg.Host+"/"+tc.image, nil)
			if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "out of disk space under "+root) {
				t.Fatalf("err = %v, want ErrNoSpace naming %s", err, root)
			}
			t.Logf("error: %v", err)
			assertNothingLeft(t, s)
		})
	}
}

// TestPrepareNoSpace fills the store's inodes after a pull: Prepare fails
// with ErrNoSpace and leaves no half-made snapshot or mount.
func TestPrepareNoSpace(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("app", "x")))
	root := tmpfsRoot(t, "nr_inodes=64")
	s := newStore(t, root, nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	fill := filepath.Join(root, "fill")
	if err := os.Mkdir(fill, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(fill, fmt.Sprint(i)))
		if errors.Is(err, unix.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// Free one inode: Prepare's first mkdir succeeds, a later one fails.
	if err := os.Remove(filepath.Join(fill, "0")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Prepare(ctxT(t), "c1", img)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Prepare on a full disk: err = %v, want ErrNoSpace", err)
	}
	t.Logf("error: %v", err)
	if ents := dirEntries(t, s.path("containers")); len(ents) > 0 {
		t.Errorf("containers/ = %v after a failed Prepare", ents)
	}
	if m := mountsUnder(t, filepath.Join(root, "containers")); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}
