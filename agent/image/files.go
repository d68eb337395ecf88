package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

const (
	// fileWorkers write small files at once: creating a file costs far more
	// kernel time than writing a few kilobytes, and creates scale with cores.
	fileWorkers = 4
	// smallFile is the largest file buffered in memory and written by a
	// worker; larger ones are streamed from the tar in order.
	smallFile = 256 << 10
)

// fileWriter tracks files being written in the background, so that any
// entry touching one of their names (or a directory above them) waits first
// and the layer comes out exactly as a sequential unpack would leave it.
type fileWriter struct {
	g     errgroup.Group
	names map[string]bool // files being written
	dirs  map[string]bool // directories above them
}

func (w *fileWriter) init() {
	w.g.SetLimit(fileWorkers)
	w.names, w.dirs = map[string]bool{}, map[string]bool{}
}

func (w *fileWriter) wait() error {
	err := w.g.Wait()
	clear(w.names)
	clear(w.dirs)
	return err
}

// barrier waits for every background write and returns the first error.
func (x *extractor) barrier() error { return x.files.wait() }

// settle waits for background writes if the entry at rel may touch one of
// them (or always, for hard links, whose target may be among them).
func (x *extractor) settle(rel string, always bool) error {
	if always || x.files.names[rel] || x.files.dirs[rel] {
		return x.barrier()
	}
	return nil
}

// settleParents waits if a directory about to be opened is a file still
// being written, so a malformed layer fails the same way every time.
func (x *extractor) settleParents(dir string) error {
	for p := dir; p != "" && p != "."; p, _ = splitRel(p) {
		if x.files.names[p] {
			return x.barrier()
		}
	}
	return nil
}

// file writes a regular file: small ones on a worker, large ones in line.
func (x *extractor) file(pfd int, rel, base string, hdr *tar.Header, r io.Reader) error {
	if err := x.clear(pfd, rel, base); err != nil {
		return err
	}
	x.size += hdr.Size
	if hdr.Size > smallFile {
		return writeFile(pfd, rel, base, hdr, r, x.buf, x.log)
	}
	body := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("read layer tar: %w", err)
	}
	fd, err := unix.FcntlInt(uintptr(pfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	x.files.names[rel] = true
	for p, _ := splitRel(rel); p != ""; p, _ = splitRel(p) {
		x.files.dirs[p] = true
	}
	x.files.g.Go(func() error {
		defer unix.Close(fd)
		if err := writeFile(fd, rel, base, hdr, bytes.NewReader(body), nil, x.log); err != nil {
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		return nil
	})
	return nil
}

// clear removes whatever an earlier entry left at rel, in line, so the
// write (maybe on a worker) can create it exclusively.
func (x *extractor) clear(pfd int, rel, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	return x.remove(pfd, rel, base)
}

// writeFile creates base in directory pfd exclusively, without following a
// symlink, fills it from r and sets owner, mode, xattrs and times. It is
// safe to call from several goroutines (buf nil or owned by the caller).
func writeFile(pfd int, rel, base string, hdr *tar.Header, r io.Reader, buf []byte, log *slog.Logger) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	if br, ok := r.(*bytes.Reader); ok {
		_, err = br.WriteTo(f)
	} else {
		_, err = io.CopyBuffer(struct{ io.Writer }{f}, r, buf)
	}
	if err == nil {
		err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
	}
	if err == nil { // after chown, which clears setuid
		err = unix.Fchmod(fd, uint32(hdr.Mode&0o7777))
	}
	if err == nil {
		err = setXattrs(fd, rel, xattrs(hdr), log)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return setTimes(pfd, base, hdr.AccessTime, hdr.ModTime)
}
