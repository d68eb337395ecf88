package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Snapshot is one container's root filesystem: the image's layers, read-only,
// under its own writable upper directory, mounted with overlayfs.
type Snapshot struct {
	Key     string    `json:"key"`
	Image   string    `json:"image"` // image digest
	Ref     string    `json:"ref"`
	Layers  []string  `json:"layers"` // diffIDs, base first; they keep the layers from GC
	Created time.Time `json:"created"`
	Rootfs  string    `json:"rootfs"`
	// Ephemeral: the snapshot's writes die with it (see Ephemeral).
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// PrepareOption changes how Prepare makes a new snapshot.
type PrepareOption func(*Snapshot)

// Ephemeral makes a snapshot whose writes are thrown away with it, as for
// `berth-agent run --rm`: overlayfs mounts it volatile, so unmounting it
// does not sync the upper layer's whole filesystem (15 ms and more on a
// busy disk, most of a short container's run), and its record is written
// without fsync. After a crash its writes cannot be trusted: Prepare and
// Snapshots make such a snapshot anew, empty, instead of mounting it again.
func Ephemeral() PrepareOption { return func(s *Snapshot) { s.Ephemeral = true } }

// Mount describes how to mount a snapshot, like containerd's mount.Mount.
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// validKey reports whether key is 1-128 letters, digits, '.', '_' or '-',
// starting with a letter or digit. (Checked by hand: the regexp it
// replaces, compiled at package init, cost every berth-agent process a
// tenth of a millisecond.)
func validKey(key string) bool {
	if key == "" || len(key) > 128 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// validDiffID reports whether id is "sha256:" and 64 lower-case hex digits.
func validDiffID(id string) bool {
	hex, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkKey(key string) error {
	if !validKey(key) {
		return newErr(ErrInvalid, nil, "snapshot key %q must be 1-128 letters, digits, '.', '_' or '-'", key)
	}
	return nil
}

func (s *Store) snapDir(key string) string { return s.path("containers", key) }

// Prepare gives container key a root filesystem made from img and returns
// where it is mounted. Calling it again for the same key and image returns
// the same rootfs (mounting it again if the mount disappeared).
func (s *Store) Prepare(ctx context.Context, key string, img Image, opts ...PrepareOption) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.snapMu.RLock()
	defer s.snapMu.RUnlock()
	defer s.snapKeys.lock(key)()
	release, _, err := s.workLock(snapLock(key), true) // against other processes
	if err != nil {
		return "", diskErr(err, s.root, "prepare snapshot "+key)
	}
	defer release()
	dir := s.snapDir(key)
	var cur Snapshot
	if err := readJSON(filepath.Join(dir, "snapshot.json"), &cur); err == nil {
		if cur.Image != img.Digest {
			return "", newErr(ErrInvalid, nil, "snapshot %q already exists for image %s", key, cur.Image)
		}
		return cur.Rootfs, s.ensureMounted(cur)
	}
	snap := Snapshot{Key: key, Image: img.Digest, Ref: img.Ref, Layers: img.Layers,
		Created: s.now(), Rootfs: filepath.Join(dir, "rootfs")}
	for _, o := range opts {
		o(&snap)
	}
	if err := s.create(snap); err != nil {
		s.destroy(dir)
		return "", err
	}
	s.touch(img.Digest)
	s.log.Debug("snapshot prepared", "key", key, "image", img.Ref)
	return snap.Rootfs, nil
}

// create makes the snapshot's directories, mounts it, and records it last,
// so a snapshot without snapshot.json is known to be half-made.
func (s *Store) create(snap Snapshot) error {
	dir := s.snapDir(snap.Key)
	what := "prepare snapshot " + snap.Key
	if err := s.destroy(dir); err != nil { // leftovers of a failed attempt
		return diskErr(err, s.root, what)
	}
	for _, d := range []string{dir, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), snap.Rootfs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return diskErr(err, s.root, what)
		}
	}
	if err := s.mount(snap); err != nil {
		return err
	}
	return diskErr(replaceJSON(filepath.Join(dir, "snapshot.json"), snap, !snap.Ephemeral), s.root, what)
}

// touchSaveEvery bounds how often a use alone rewrites images.json: GC
// keeps images used within hours, so a minute of LastUsed lost in a crash
// changes nothing, and starting many containers at once does not wait on
// one fsync each.
const touchSaveEvery = time.Minute

// touch marks an image as just used.
func (s *Store) touch(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.meta.Images[digest]
	if rec == nil {
		return
	}
	now := s.now()
	rec.LastUsed = now
	if now.Sub(s.metaSaved) < touchSaveEvery {
		return
	}
	s.metaSaved = now
	// A last-used time lost in a crash costs nothing: no fsync.
	if err := replaceJSON(s.path("images.json"), s.meta, false); err != nil {
		s.log.Warn("save image records", "err", err)
	}
}

// lowerDirs returns the short link names of the layers, top layer first, as
// overlay's lowerdir wants them, recreating links that went missing.
func (s *Store) lowerDirs(snap Snapshot) ([]string, error) {
	out := make([]string, 0, len(snap.Layers))
	for i := len(snap.Layers) - 1; i >= 0; i-- {
		h := hexOf(snap.Layers[i])
		if !validDiffID(snap.Layers[i]) {
			return nil, newErr(ErrInvalid, nil, "image %s: bad layer diffID %q", snap.Ref, snap.Layers[i])
		}
		li, ok := s.readLayerInfo(h)
		if !ok {
			return nil, newErr(ErrNotFound, nil, "layer %s of image %s is not on this node; pull the image again", snap.Layers[i], snap.Ref)
		}
		if err := s.ensureLink(h, li.Link); err != nil {
			return nil, diskErr(err, s.root, "link layer "+snap.Layers[i])
		}
		out = append(out, filepath.Join("l", li.Link))
	}
	return out, nil
}

// mount mounts the overlay. Lower dirs are short paths relative to the root
// (l/<id>), so that even images with many layers fit overlay's one-page
// limit on mount options.
func (s *Store) mount(snap Snapshot) error {
	if len(snap.Layers) == 0 {
		return newErr(ErrInvalid, nil, "image %s has no layers", snap.Ref)
	}
	lowers, err := s.lowerDirs(snap)
	if err != nil {
		return err
	}
	dir := s.snapDir(snap.Key)
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		strings.Join(lowers, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if snap.Ephemeral {
		data += ",volatile"
	}
	if len(data) >= os.Getpagesize() {
		return newErr(ErrInvalid, nil, "image %s has too many layers (%d) for an overlay mount under %s", snap.Ref, len(snap.Layers), s.root)
	}
	if err := mountAt(s.root, snap.Rootfs, data); err != nil {
		return diskErr(err, s.root, "mount snapshot "+snap.Key)
	}
	return nil
}

// mountAt mounts overlay with data on target from working directory dir. The
// chdir happens on a thread of its own (unshare CLONE_FS) that is never
// returned to Go's scheduler, so no other goroutine sees it.
func mountAt(dir, target, data string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", 0, data)
	}()
	return <-errc
}

func (s *Store) ensureMounted(snap Snapshot) error {
	ok, err := mountinfo.Mounted(snap.Rootfs)
	if err != nil {
		return fmt.Errorf("check mount of snapshot %s: %w", snap.Key, err)
	}
	if ok {
		return nil
	}
	if snap.Ephemeral {
		// A volatile overlay's upper layer is not consistent after the
		// mount is gone (overlayfs refuses to mount it again): start over.
		s.log.Info("making ephemeral snapshot anew", "key", snap.Key)
		return s.create(snap)
	}
	s.log.Info("remounting snapshot", "key", snap.Key)
	return s.mount(snap)
}

// Remove unmounts and deletes snapshot key; call it once the container has
// stopped. Removing a snapshot that does not exist is not an error.
func (s *Store) Remove(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.snapMu.RLock()
	defer s.snapMu.RUnlock()
	defer s.snapKeys.lock(key)()
	release, _, err := s.workLock(snapLock(key), true)
	if err != nil {
		return diskErr(err, s.root, "remove snapshot "+key)
	}
	defer release()
	dir := s.snapDir(key)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := s.destroy(dir); err != nil {
		return diskErr(err, s.root, "remove snapshot "+key)
	}
	s.log.Debug("snapshot removed", "key", key)
	return nil
}

// destroy unmounts a snapshot directory's rootfs and deletes it.
func (s *Store) destroy(dir string) error {
	if err := unmount(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// unmount unmounts target until nothing is mounted there; a busy mount is
// detached lazily rather than left behind.
func unmount(target string) error {
	for range 8 {
		ok, err := mountinfo.Mounted(target)
		if err != nil || !ok {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		err = unix.Unmount(target, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", target)
}

// Snapshots lists the snapshots on disk, mounting again any whose mount is
// gone (after a reboot), so an agent can adopt its containers on restart.
func (s *Store) Snapshots(ctx context.Context) ([]Snapshot, error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	snaps, err := s.readSnapshots()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, sn := range snaps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.ensureMounted(sn); err != nil {
			errs = append(errs, err)
		}
	}
	return snaps, errors.Join(errs...)
}

// Mounts returns how to mount snapshot key elsewhere (absolute paths).
func (s *Store) Mounts(ctx context.Context, key string) (Mount, error) {
	if err := checkKey(key); err != nil {
		return Mount{}, err
	}
	var snap Snapshot
	dir := s.snapDir(key)
	if err := readJSON(filepath.Join(dir, "snapshot.json"), &snap); err != nil {
		return Mount{}, newErr(ErrNotFound, err, "snapshot %q not found", key)
	}
	lowers, err := s.lowerDirs(snap)
	if err != nil {
		return Mount{}, err
	}
	for i, l := range lowers {
		lowers[i] = filepath.Join(s.root, l)
	}
	return Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + strings.Join(lowers, ":"),
		"upperdir=" + filepath.Join(dir, "upper"),
		"workdir=" + filepath.Join(dir, "work"),
	}}, nil
}

// readSnapshots reads every complete snapshot record; snapMu is held.
func (s *Store) readSnapshots() ([]Snapshot, error) {
	ents, err := os.ReadDir(s.path("containers"))
	if err != nil {
		return nil, diskErr(err, s.root, "list snapshots")
	}
	var out []Snapshot
	for _, e := range ents {
		var sn Snapshot
		if err := readJSON(filepath.Join(s.snapDir(e.Name()), "snapshot.json"), &sn); err != nil {
			continue // half-made; swept on start
		}
		out = append(out, sn)
	}
	return out, nil
}

// sweepSnapshots removes snapshots a crash left half-made (no
// snapshot.json), but not those another process is making (worklock.go).
func (s *Store) sweepSnapshots() error {
	ents, err := os.ReadDir(s.path("containers"))
	if err != nil {
		return diskErr(err, s.root, "sweep snapshots")
	}
	for _, e := range ents {
		if err := s.sweepSnapshot(e.Name()); err != nil {
			return diskErr(err, s.root, "sweep snapshot "+e.Name())
		}
	}
	return nil
}

// sweepSnapshot removes snapshot key if it is half-made and nobody is
// working on it.
func (s *Store) sweepSnapshot(key string) error {
	dir := s.snapDir(key)
	if _, err := os.Stat(filepath.Join(dir, "snapshot.json")); err == nil {
		return nil
	}
	release, ok, err := s.workLock(snapLock(key), false)
	if err != nil || !ok {
		return err // !ok: another process is preparing or removing it
	}
	defer release()
	// Looked at again under the lock: its maker may have finished since.
	if _, err := os.Lstat(filepath.Join(dir, "snapshot.json")); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	s.log.Info("removing half-made snapshot", "key", key)
	return s.destroy(dir)
}
