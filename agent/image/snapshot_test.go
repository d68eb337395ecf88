package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"berth/internal/await"
)

func TestOverlayWhiteoutsAndOpaqueDirs(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "app:v1",
		tarLayer(t, dir("a/"), file("a/keep", "k"), file("a/gone", "g"), dir("o/"), file("o/old", "old"), file("top", "1")),
		tarLayer(t, whiteout("a/.wh.gone"), dir("o/"), whiteout("o/.wh..wh..opq"), file("o/new", "new"), file("top", "2")))
	root := testRoot(t)
	s := newStore(t, root, nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := s.Prepare(ctxT(t), "c1", img)
	if err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, filepath.Join(rootfs, "a")); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("a/ = %v, want [keep] (a/gone was deleted in layer 2)", got)
	}
	if got := dirEntries(t, filepath.Join(rootfs, "o")); !slices.Equal(got, []string{"new"}) {
		t.Errorf("o/ = %v, want [new] (o/ is opaque in layer 2)", got)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "top")); string(b) != "2" {
		t.Errorf("top = %q, want the upper layer's", b)
	}
	// Writes go to the container's own upper dir, not the shared layers.
	if err := os.WriteFile(filepath.Join(rootfs, "a", "keep"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.layerDir(hexOf(img.Layers[0])), "fs", "a", "keep")); string(b) != "k" {
		t.Errorf("layer changed under a container write: %q", b)
	}
	if err := s.Remove(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("mounts left after Remove: %v", m)
	}
	if _, err := os.Stat(s.snapDir("c1")); !os.IsNotExist(err) {
		t.Errorf("snapshot dir left after Remove: %v", err)
	}
	if err := s.Remove(ctxT(t), "c1"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestUnpackEntries(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	suid := file("bin/su", "elf")
	suid.mode, suid.uid, suid.gid = 0o4755, 1000, 1001
	fifo := entry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600}
	reg.push(t, "app:v1", tarLayer(t,
		dir("bin/"), suid, hardlink("bin/su2", "bin/su"),
		symlink("etc-passwd", "/etc/passwd"), symlink("up", "../../../.."),
		chardev("dev/null", 1), dir("run/"), fifo))
	s := newStore(t, testRoot(t), nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(s.layerDir(hexOf(img.Layers[0])), "fs")
	var a, b unix.Stat_t
	if err := unix.Lstat(filepath.Join(fs, "bin/su"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(fs, "bin/su2"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if a.Mode&0o7777 != 0o4755 || a.Uid != 1000 || a.Gid != 1001 {
		t.Errorf("bin/su mode %o uid %d gid %d, want 4755 1000 1001", a.Mode&0o7777, a.Uid, a.Gid)
	}
	if mt := time.Unix(a.Mtim.Unix()); !mt.Equal(testMtime) {
		t.Errorf("mtime = %v, want %v", mt, testMtime)
	}
	for link, want := range map[string]string{"etc-passwd": "/etc/passwd", "up": "../../../.."} {
		if got, err := os.Readlink(filepath.Join(fs, link)); err != nil || got != want {
			t.Errorf("symlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(fs, "dev/null")); !os.IsNotExist(err) {
		t.Errorf("device node was created: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(fs, "run/fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}
}

func TestUnpackRejectsUnsafeEntries(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dotdot", []entry{file("a/../../x", "x")}, "points outside the layer"},
		{"absolute dotdot", []entry{file("/../x", "x")}, "points outside the layer"},
		{"write through symlink", []entry{symlink("esc", "/tmp"), file("esc/x", "x")}, "goes through a symlink"},
		{"write through relative symlink", []entry{dir("d/"), symlink("d/up", ".."), symlink("d/up2", "up/.."), file("d/up2/x", "x")}, "goes through a symlink"},
		{"hardlink outside", []entry{hardlink("h", "../../etc/passwd")}, "points outside the layer"},
		{"hardlink absolute", []entry{hardlink("h", "/etc/passwd")}, "target not in this layer"},
		{"hardlink via symlink", []entry{symlink("s", "/etc"), hardlink("h", "s/passwd")}, "target not in this layer"},
		{"whiteout dotdot", []entry{whiteout("a/.wh...")}, "bad whiteout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t)
			reg.push(t, "evil:v1", tarLayer(t, tc.entries...))
			s := newStore(t, testRoot(t), nil)
			_, err := s.Pull(ctxT(t), reg.Host+"/evil:v1", nil)
			if !errors.Is(err, ErrBadLayer) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBadLayer containing %q", err, tc.want)
			}
			assertNothingLeft(t, s)
		})
	}
}

func TestManyLayersMount(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	var layers [][]byte
	for i := range 40 {
		layers = append(layers, tarLayer(t, file(fmt.Sprintf("f%02d", i), fmt.Sprint(i)), file("which", fmt.Sprint(i))))
	}
	reg.push(t, "tall:v1", layers...)
	root := testRoot(t)
	s := newStore(t, root, nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/tall:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Mounts(ctxT(t), "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Mounts of a missing snapshot = %+v, %v", m, err)
	}
	rootfs, err := s.Prepare(ctxT(t), "tall", img)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(dirEntries(t, rootfs)); n != 41 {
		t.Errorf("rootfs has %d entries, want 41", n)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "which")); string(b) != "39" {
		t.Errorf("which = %q, want the top layer's 39", b)
	}
	m, err = s.Mounts(ctxT(t), "tall")
	if err != nil || m.Type != "overlay" || strings.Count(m.Options[0], ":") != 39 {
		t.Errorf("Mounts = %+v, %v", m, err)
	}
	if err := s.Remove(ctxT(t), "tall"); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func TestRestartKeepsImagesAndSnapshots(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("hello", "world")))
	root := testRoot(t)
	s := newStore(t, root, nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := s.Prepare(ctxT(t), "c1", img)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rootfs, "state"), []byte("kept"), 0o644)
	// A half-made snapshot from a crash is swept by New.
	os.MkdirAll(s.snapDir("half"), 0o755)
	s.Close()
	// Simulate a reboot: the mount is gone.
	if err := unix.Unmount(rootfs, 0); err != nil {
		t.Fatal(err)
	}

	s2 := newStore(t, root, nil)
	got, err := s2.Lookup(reg.Host + "/app:v1")
	if err != nil || got.Digest != img.Digest || got.Config.WorkingDir != "/srv" {
		t.Fatalf("Lookup after restart = %+v, %v", got, err)
	}
	snaps, err := s2.Snapshots(ctxT(t))
	if err != nil || len(snaps) != 1 || snaps[0].Key != "c1" || snaps[0].Rootfs != rootfs {
		t.Fatalf("Snapshots after restart = %+v, %v", snaps, err)
	}
	if _, err := os.Stat(s2.snapDir("half")); !os.IsNotExist(err) {
		t.Errorf("half-made snapshot not swept: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(rootfs, "state"))
		return string(b) == "kept"
	}, "remounted rootfs shows the container's writes")
	if b, _ := os.ReadFile(filepath.Join(rootfs, "hello")); string(b) != "world" {
		t.Errorf("hello = %q", b)
	}
	// Prepare again for the same key and image is idempotent.
	if again, err := s2.Prepare(ctxT(t), "c1", got); err != nil || again != rootfs {
		t.Errorf("Prepare again = %q, %v", again, err)
	}
	if n := len(mountsUnder(t, rootfs)); n != 1 {
		t.Errorf("%d mounts at rootfs, want 1", n)
	}
	// GC on the restarted store keeps the layers the snapshot uses.
	if _, err := s2.GC(ctxT(t), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.layerDir(hexOf(img.Layers[0]))); err != nil {
		t.Errorf("GC removed a layer in use: %v", err)
	}
	if err := s2.Remove(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
}

func TestNoSpace(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	rnd := make([]byte, 4<<20)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i>>8*31)
	}
	reg.push(t, "big:v1", tarLayer(t, file("blob", string(rnd))))
	root := testRoot(t)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	s := newStore(t, root, nil)
	_, err := s.Pull(ctxT(t), reg.Host+"/big:v1", nil)
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "out of disk space under "+root) {
		t.Fatalf("err = %v, want ErrNoSpace naming %s", err, root)
	}
	t.Logf("error: %v", err)
	assertNothingLeft(t, s)
}

func TestPrepareFailsCleanly(t *testing.T) {
	needRoot(t)
	root := testRoot(t)
	s := newStore(t, root, nil)
	ghost := Image{Ref: "example.com/ghost:v1", Digest: "sha256:" + strings.Repeat("1", 64),
		Layers: []string{"sha256:" + strings.Repeat("2", 64)}}
	_, err := s.Prepare(ctxT(t), "c1", ghost)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "pull the image again") {
		t.Fatalf("Prepare with a missing layer: err = %v", err)
	}
	for _, bad := range []Image{
		{Ref: "x", Digest: "sha256:1"},
		{Ref: "x", Digest: "sha256:1", Layers: []string{"sha256:../../etc"}},
	} {
		if _, err := s.Prepare(ctxT(t), "c2", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Prepare(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	for _, key := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := s.Prepare(ctxT(t), key, ghost); !errors.Is(err, ErrInvalid) {
			t.Errorf("Prepare key %q: err = %v, want ErrInvalid", key, err)
		}
	}
	if ents := dirEntries(t, s.path("containers")); len(ents) > 0 {
		t.Errorf("containers/ = %v after failed Prepares", ents)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

// TestKeyAndDiffIDChecksMatchThePatterns checks the hand-written checks
// against the regexps they replaced.
func TestKeyAndDiffIDChecksMatchThePatterns(t *testing.T) {
	key := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	diffID := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{"", "a", ".a", "a.b-c_d", "a/b", strings.Repeat("k", 128), strings.Repeat("k", 129), "sha256:" + hex} {
		if got, want := validKey(s), key.MatchString(s); got != want {
			t.Errorf("validKey(%q) = %v, the pattern says %v", s, got, want)
		}
	}
	for _, s := range []string{"sha256:" + hex, "sha256:" + hex[:63], "sha256:" + hex + "0", "sha256:" + strings.ToUpper(hex),
		"sha512:" + hex, "sha256:" + hex[:63] + "g", "", "sha256:"} {
		if got, want := validDiffID(s), diffID.MatchString(s); got != want {
			t.Errorf("validDiffID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

// TestEphemeralSnapshot: an ephemeral snapshot is a volatile overlay (no
// sync of the upper layer on unmount); after its mount is gone (a crash)
// it comes back empty instead of failing to mount.
func TestEphemeralSnapshot(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("hello", "world")))
	root := testRoot(t)
	s := newStore(t, root, nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := s.Prepare(ctxT(t), "eph", img, Ephemeral())
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(rootfs))
	if err != nil || len(mounts) != 1 || !strings.Contains(mounts[0].VFSOptions, "volatile") {
		t.Fatalf("mount of the ephemeral snapshot = %+v, %v; want overlay with volatile", mounts, err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "scratch"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(rootfs, 0); err != nil { // the crash
		t.Fatal(err)
	}
	again, err := s.Prepare(ctxT(t), "eph", img)
	if err != nil || again != rootfs {
		t.Fatalf("Prepare after the mount was lost = %q, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "scratch")); !os.IsNotExist(err) {
		t.Errorf("the lost ephemeral snapshot's write is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "hello")); string(b) != "world" {
		t.Errorf("hello = %q after making it anew", b)
	}
	if err := s.Remove(ctxT(t), "eph"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.snapDir("eph")); !os.IsNotExist(err) {
		t.Errorf("snapshot dir left after Remove: %v", err)
	}
}
