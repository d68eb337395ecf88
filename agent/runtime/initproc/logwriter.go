package initproc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// logName is the current log file in a container's log directory;
// rotated files are logName.1 (newest) to logName.N.
const logName = initconf.LogName

// The record format is initconf's (LogStdout, LogFull, ...).
const (
	streamStdout = initconf.LogStdout
	streamStderr = initconf.LogStderr
	tagFull      = initconf.LogFull
	tagPartial   = initconf.LogPartial
)

// rotator writes records to logName in a directory given by fd, moving it
// aside to logName.1, .2, … when a record would take it past max bytes.
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

// writeRecord appends one whole record, rotating first when it would take
// a non-empty file past max bytes: records are never split across files.
func (r *rotator) writeRecord(rec []byte) error {
	if r.size > 0 && r.size+int64(len(rec)) > r.max {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	n, err := r.f.Write(rec)
	r.size += int64(n)
	return err
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

// logSink frames the output of a container's streams into records of one
// rotated log. Each stream has its own copier; the sink serialises them.
type logSink struct {
	mu   sync.Mutex
	rot  *rotator
	buf  []byte
	left atomic.Int32  // copiers still running
	done chan struct{} // closed when the last copier ends
}

func newLogSink(rot *rotator, copiers int) *logSink {
	s := &logSink{rot: rot, done: make(chan struct{})}
	s.left.Store(int32(copiers))
	return s
}

// write frames p, read from stream at time now, into records: one per
// line, and a partial one for a rest without a newline.
func (s *logSink) write(stream string, now time.Time, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := now.UTC().AppendFormat(nil, time.RFC3339Nano)
	for len(p) > 0 {
		line, tag := p, byte(tagPartial)
		if nl := bytes.IndexByte(p, '\n'); nl >= 0 {
			line, tag = p[:nl], tagFull
			p = p[nl+1:]
		} else {
			p = nil
		}
		s.buf = append(s.buf[:0], ts...)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, stream...)
		s.buf = append(s.buf, ' ', tag, ' ')
		s.buf = append(s.buf, line...)
		s.buf = append(s.buf, '\n')
		_ = s.rot.writeRecord(s.buf) // a full disk loses lines, never the container
	}
}

// copyLog copies src into the sink as stream until EOF (or EIO from a pty
// master whose slaves are all closed), then closes src; the last copier
// to end closes the log and the sink's done channel.
func copyLog(s *logSink, stream string, src *os.File) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.write(stream, time.Now(), buf[:n])
		}
		if err != nil { // io.EOF, or EIO from a pty with no writer left
			break
		}
	}
	src.Close()
	if s.left.Add(-1) == 0 {
		s.rot.f.Close()
		close(s.done)
	}
}
