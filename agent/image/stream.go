package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// download streams layer l through both digest checks into dir and returns
// the unpacked size. Bytes are unpacked as they arrive; nothing is trusted
// until both digests match, and the caller discards dir on error.
func (s *Store) download(ctx context.Context, r name.Reference, l v1.Layer, dir string, dig, diffID v1.Hash, total int64, emit func(Progress)) (int64, error) {
	ref, reg := r.Name(), r.Context().RegistryStr()
	rc, err := l.Compressed()
	if err != nil {
		return 0, registryErr(err, ref, reg)
	}
	stall := s.cfg.StallTimeout
	if stall <= 0 {
		stall = time.Minute
	}
	wd := newWatchdog(rc, stall)
	defer wd.stop()
	// The body's request lives as long as the whole pull; a layer whose
	// callers all gave up stops reading at once.
	defer context.AfterFunc(ctx, wd.close)()
	cr := &hashReader{r: wd, h: sha256.New(), emit: emit, total: total}
	size, err := unpackStream(ctx, cr, dir, diffID, s.cfg.limits(), s.log)
	if err == nil {
		// Whatever follows the compressed stream is under its digest too.
		_, err = io.Copy(io.Discard, cr)
	}
	switch {
	case wd.stalled.Load():
		return 0, newErr(ErrUnreachable, nil, "registry %s stopped sending layer %s of %q for %s", reg, dig, ref, stall)
	case cr.err != nil && isDigestErr(cr.err), cr.eof && cr.sum() != dig.Hex:
		return 0, newErr(ErrDigestMismatch, nil, "layer %s of %q from registry %s is corrupt: its content has digest sha256:%s", dig, ref, reg, cr.sum())
	case err != nil && cr.err != nil:
		return 0, registryErr(cr.err, ref, reg)
	case err == nil && !cr.eof:
		return 0, fmt.Errorf("layer %s of %s: download ended early", dig, ref)
	case err != nil:
		return 0, diskErr(err, s.root, fmt.Sprintf("unpack layer %s of %s", dig, ref))
	}
	emit(Progress{BytesDone: total, BytesTotal: total, Status: StatusExtracting})
	return size, nil
}

// unpackStream decompresses r, extracts the tar into dir within lim and
// checks the uncompressed digest against diffID. It reads r to its end
// unless the disk, a limit or the caller failed, so the caller can check
// the compressed digest.
func unpackStream(ctx context.Context, r io.Reader, dir string, diffID v1.Hash, lim limits, log *slog.Logger) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	dr, closeDec, err := decompress(br)
	if err != nil {
		io.Copy(io.Discard, br)
		return 0, err
	}
	defer closeDec()
	dh := sha256.New()
	ur := io.TeeReader(dr, dh)
	size, err := extract(ctx, tar.NewReader(ur), dir, lim, log)
	if err == nil {
		_, err = io.Copy(io.Discard, ur) // tar padding after the end marker
	}
	if err != nil {
		if !isLocalErr(ctx, err) {
			io.Copy(io.Discard, br)
		}
		return 0, err
	}
	if got := hex.EncodeToString(dh.Sum(nil)); got != diffID.Hex {
		return 0, newErr(ErrDigestMismatch, nil, "layer content has diffID sha256:%s, the image config says %s", got, diffID)
	}
	return size, nil
}

// isLocalErr tells errors of our own making (disk, bad layer, cancel) from
// read errors, after which draining the stream still tells us whether the
// bytes were corrupt.
func isLocalErr(ctx context.Context, err error) bool {
	var ours *Error
	return ctx.Err() != nil || errors.As(err, &ours) || errors.Is(err, unix.ENOSPC) ||
		errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EROFS) || errors.Is(err, unix.EIO)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress picks gzip, zstd or none by the stream's magic bytes.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("read gzip layer: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("read zstd layer: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// hashReader hashes and counts what passes through, remembers how reading
// ended, and reports download progress at a modest rate.
type hashReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	eof   bool
	err   error
	emit  func(Progress)
	total int64
	last  time.Time
}

func (c *hashReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil:
		c.err = err
	}
	if now := time.Now(); now.Sub(c.last) >= progressInterval {
		c.last = now
		c.emit(Progress{BytesDone: c.n, BytesTotal: c.total, Status: StatusPulling})
	}
	return n, err
}

func (c *hashReader) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// watchdog closes a download that receives nothing for too long, so a stuck
// registry fails the pull instead of hanging it.
type watchdog struct {
	rc      io.ReadCloser
	d       time.Duration
	timer   *time.Timer
	stalled atomic.Bool
	once    sync.Once
}

func newWatchdog(rc io.ReadCloser, d time.Duration) *watchdog {
	w := &watchdog{rc: rc, d: d}
	w.timer = time.AfterFunc(d, func() {
		w.stalled.Store(true)
		w.close()
	})
	return w
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	if n > 0 {
		w.timer.Reset(w.d)
	}
	return n, err
}

func (w *watchdog) close() { w.once.Do(func() { w.rc.Close() }) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.close()
}
