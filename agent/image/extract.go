package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// resolveBeneath keeps every path walk inside the layer and refuses symlinks,
// so a hostile tar cannot make extraction write through a link it planted.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// extractor unpacks one layer tar into a directory, turning whiteouts into
// overlayfs whiteouts and never following a symlink while it writes.
type extractor struct {
	log     *slog.Logger
	root    string // directory being filled
	rootFd  int
	dirFd   int    // cached parent directory of the last entry, -1 if none
	dirRel  string // its path relative to root
	dirs    []dirTime
	size    int64 // bytes of regular files so far
	entries int64 // tar entries so far
	lim     limits
	buf     []byte
	files   fileWriter
}

// dirTime is a directory whose times are set once its children are written
// (creating a child changes a directory's mtime).
type dirTime struct {
	rel   string
	atime time.Time
	mtime time.Time
}

// extract unpacks tr into dir and returns the bytes of regular files written.
// It stops at the first entry it cannot write safely, and before the first
// that would take the layer over a limit of lim.
func extract(ctx context.Context, tr *tar.Reader, dir string, lim limits, log *slog.Logger) (int64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", dir, err)
	}
	x := &extractor{log: log, root: dir, rootFd: fd, dirFd: -1, lim: lim, buf: make([]byte, 256<<10)}
	x.files.init()
	defer x.close()
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read layer tar: %w", err)
		}
		if err := x.count(hdr); err != nil {
			return 0, err
		}
		if err := x.entry(hdr, tr); err != nil {
			return 0, err
		}
	}
	if err := x.barrier(); err != nil {
		return 0, err
	}
	x.finishDirs()
	return x.size, nil
}

func (x *extractor) close() {
	x.files.wait() // workers hold descriptors and write under root
	if x.dirFd >= 0 {
		unix.Close(x.dirFd)
	}
	unix.Close(x.rootFd)
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag == tar.TypeDir {
			x.dirs = append(x.dirs, dirTime{"", hdr.AccessTime, hdr.ModTime})
			return x.chown(x.rootFd, ".", hdr, true)
		}
		return nil
	}
	dir, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(dir, base, hdr.Name)
	}
	if err := x.settle(rel, hdr.Typeflag == tar.TypeLink); err != nil {
		return err
	}
	pfd, err := x.parent(dir)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = x.mkdir(pfd, rel, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		err = x.file(pfd, rel, base, hdr, r)
	case tar.TypeSymlink:
		err = x.create(pfd, rel, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) })
		if err == nil {
			err = x.finish(pfd, base, hdr)
		}
	case tar.TypeLink:
		err = x.hardlink(pfd, rel, base, hdr)
	case tar.TypeFifo:
		err = x.create(pfd, rel, base, func() error { return unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0) })
		if err == nil {
			err = x.finish(pfd, base, hdr)
		}
	case tar.TypeChar, tar.TypeBlock:
		x.log.Debug("skipping device node in layer", "path", rel)
	default:
		x.log.Debug("skipping unsupported tar entry", "path", rel, "type", string(hdr.Typeflag))
	}
	if err != nil {
		return fmt.Errorf("unpack %q: %w", hdr.Name, err)
	}
	return nil
}

// cleanRel makes a tar name relative to the layer root, rejecting names
// that climb out of it. "" is the root itself.
func cleanRel(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." {
		return "", nil
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", newErr(ErrBadLayer, nil, "layer entry %q points outside the layer", name)
	}
	return p, nil
}

func splitRel(rel string) (dir, base string) {
	dir, base = path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// parent returns a descriptor for directory rel, creating it if missing. The
// descriptor is cached for the next entry and must not be closed.
func (x *extractor) parent(rel string) (int, error) {
	if rel == "" {
		return x.rootFd, nil
	}
	if x.dirFd >= 0 && x.dirRel == rel {
		return x.dirFd, nil
	}
	if err := x.settleParents(rel); err != nil {
		return -1, err
	}
	fd, err := x.openDir(rel, true)
	if err != nil {
		return -1, err
	}
	if x.dirFd >= 0 {
		unix.Close(x.dirFd)
	}
	x.dirFd, x.dirRel = fd, rel
	return fd, nil
}

// openDir opens directory rel beneath the root without following symlinks,
// creating it (and its parents, mode 0755) if create is set.
func (x *extractor) openDir(rel string, create bool) (int, error) {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveBeneath}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat2(x.rootFd, rel, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOENT) && create && attempt == 0:
			if err := x.mkdirParents(rel); err != nil {
				return -1, err
			}
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTDIR):
			return -1, newErr(ErrBadLayer, nil, "layer path %q goes through a symlink or a non-directory", rel)
		default:
			return -1, fmt.Errorf("open %q in layer: %w", rel, err)
		}
	}
}

func (x *extractor) mkdirParents(rel string) error {
	dir, base := splitRel(rel)
	pfd := x.rootFd
	if dir != "" {
		fd, err := x.openDir(dir, true)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pfd = fd
	}
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir %q: %w", rel, err)
	}
	return nil
}

// create runs mk, and if the name is taken, removes what is there and retries.
func (x *extractor) create(pfd int, rel, base string, mk func() error) error {
	err := mk()
	if errors.Is(err, unix.EEXIST) {
		if err := x.remove(pfd, rel, base); err != nil {
			return err
		}
		err = mk()
	}
	return err
}

// remove deletes whatever rel is (an earlier entry of the same name).
func (x *extractor) remove(pfd int, rel, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		if x.dirFd >= 0 && (x.dirRel == rel || strings.HasPrefix(x.dirRel, rel+"/")) {
			unix.Close(x.dirFd)
			x.dirFd = -1
		}
		// The parents of rel were opened beneath the root without symlinks.
		err = os.RemoveAll(filepath.Join(x.root, rel))
	}
	return err
}

func (x *extractor) mkdir(pfd int, rel, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err = x.create(pfd, rel, base, func() error { return unix.Mkdirat(pfd, base, 0o700) })
		}
	}
	if err != nil {
		return err
	}
	if err := x.chown(pfd, base, hdr, true); err != nil {
		return err
	}
	if xa := xattrs(hdr); len(xa) > 0 {
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := setXattrs(fd, rel, xa, x.log); err != nil {
			return err
		}
	}
	x.dirs = append(x.dirs, dirTime{rel, hdr.AccessTime, hdr.ModTime})
	return nil
}

func (x *extractor) hardlink(pfd int, rel, base string, hdr *tar.Header) error {
	target, err := cleanRel(hdr.Linkname)
	if err != nil {
		return err
	}
	if target == "" {
		return newErr(ErrBadLayer, nil, "hard link %q points at the layer root", hdr.Name)
	}
	tdir, tbase := splitRel(target)
	tfd := x.rootFd
	if tdir != "" {
		if tfd, err = x.openDir(tdir, false); err != nil {
			return newErr(ErrBadLayer, err, "hard link %q to %q: target not in this layer", hdr.Name, hdr.Linkname)
		}
		defer unix.Close(tfd)
	}
	err = x.create(pfd, rel, base, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) })
	if errors.Is(err, unix.ENOENT) {
		return newErr(ErrBadLayer, nil, "hard link %q to %q: target not in this layer", hdr.Name, hdr.Linkname)
	}
	return err
}

// whiteout records a deletion (.wh.NAME) as an overlay whiteout device, or
// an opaque directory (.wh..wh..opq) as the overlay opaque xattr.
func (x *extractor) whiteout(dir, base, name string) error {
	pfd, err := x.parent(dir)
	if err != nil {
		return err
	}
	switch {
	case base == whiteoutOpaque:
		if err := unix.Fsetxattr(pfd, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", dir, err)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		x.log.Debug("skipping whiteout metadata", "path", name)
		return nil
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return newErr(ErrBadLayer, nil, "bad whiteout %q", name)
	}
	rel := path.Join(dir, victim)
	if err := x.settle(rel, false); err != nil {
		return err
	}
	err = x.create(pfd, rel, victim, func() error { return unix.Mknodat(pfd, victim, unix.S_IFCHR, 0) })
	if err != nil {
		return fmt.Errorf("whiteout %q: %w", name, err)
	}
	return nil
}

// finish sets owner and times of a non-directory without following it.
func (x *extractor) finish(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	return setTimes(pfd, base, hdr.AccessTime, hdr.ModTime)
}

// chown sets owner then mode (a directory is known not to be a symlink).
func (x *extractor) chown(pfd int, base string, hdr *tar.Header, isDir bool) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if !isDir {
		return nil
	}
	return unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0)
}

// xattrs returns the extended attributes of an entry that are safe to set:
// user.* and file capabilities. trusted.* (overlay's own) never is.
func xattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !(strings.HasPrefix(name, "user.") || name == "security.capability") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out
}

func setXattrs(fd int, rel string, xa map[string]string, log *slog.Logger) error {
	for k, v := range xa {
		err := unix.Fsetxattr(fd, k, []byte(v), 0)
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return err
		}
		if err != nil {
			log.Debug("skipping xattr", "path", rel, "xattr", k, "err", err)
		}
	}
	return nil
}

func (x *extractor) finishDirs() {
	for _, d := range x.dirs {
		if d.rel == "" {
			setTimes(x.rootFd, ".", d.atime, d.mtime)
			continue
		}
		dir, base := splitRel(d.rel)
		pfd := x.rootFd
		if dir != "" {
			fd, err := x.openDir(dir, false)
			if err != nil {
				continue // replaced by a later entry
			}
			pfd = fd
		}
		setTimes(pfd, base, d.atime, d.mtime)
		if pfd != x.rootFd {
			unix.Close(pfd)
		}
	}
}

func setTimes(pfd int, base string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}
