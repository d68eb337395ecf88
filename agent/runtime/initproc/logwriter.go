package initproc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// logName is the current log file in a container's state directory;
// rotated files are logName.1 (newest) to logName.N.
const logName = initconf.LogName

// rotator writes a container's output to logName in a directory given by
// fd, moving it aside to logName.1, .2, … when it would exceed max bytes.
// The init uses it after pivot_root, so it works on the directory fd only.
type rotator struct {
	dir   int
	max   int64
	files int
	f     *os.File
	size  int64
}

func newRotator(dir int, max int64, files int) (*rotator, error) {
	r := &rotator{dir: dir, max: max, files: files}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotator) open() error {
	fd, err := unix.Openat(r.dir, logName, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logName, err)
	}
	r.f = os.NewFile(uintptr(fd), logName)
	st, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	r.size = st.Size()
	return nil
}

// Write appends p, rotating whenever the file would pass max bytes. A
// chunk is split at its last newline that fits, so lines stay whole where
// they can.
func (r *rotator) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		room := r.max - r.size
		if room <= 0 {
			if err := r.rotate(); err != nil {
				return total, err
			}
			continue
		}
		chunk := p
		if int64(len(chunk)) > room {
			chunk = p[:room]
			if nl := bytes.LastIndexByte(chunk, '\n'); nl >= 0 {
				chunk = p[:nl+1]
			} else if r.size > 0 {
				if err := r.rotate(); err != nil {
					return total, err
				}
				continue
			}
		}
		n, err := r.f.Write(chunk)
		r.size += int64(n)
		total += n
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

func (r *rotator) rotate() error {
	r.f.Close()
	for i := r.files - 1; i >= 1; i-- {
		from := logName
		if i > 1 {
			from = logName + "." + strconv.Itoa(i-1)
		}
		if err := unix.Renameat(r.dir, from, r.dir, logName+"."+strconv.Itoa(i)); err != nil && err != unix.ENOENT {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	if r.files <= 1 {
		_ = unix.Unlinkat(r.dir, logName, 0)
	}
	return r.open()
}

// copyLog copies src to the rotator until EOF (or EIO from a pty master
// whose slaves are all closed), then closes both.
func copyLog(r *rotator, src *os.File, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			_, _ = r.Write(buf[:n])
		}
		if err != nil { // io.EOF, or EIO from a pty with no writer left
			break
		}
	}
	src.Close()
	r.f.Close()
}
