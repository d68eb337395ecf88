package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"berth/agent/runtime/initconf"
)

// followPoll is how often a followed log is checked for new output.
const followPoll = 50 * time.Millisecond

// maxRecord bounds one record a reader accepts; the init writes records
// of at most 32 KiB of data.
const maxRecord = 1 << 20

// LogEntry is one record of a container's output.
type LogEntry struct {
	// Time is when the init read the output; zero for a line written by
	// an init older than the record format.
	Time time.Time
	// Stderr says the line came from standard error (without a TTY).
	Stderr bool
	// Data is a line of output with its newline; only the last line of a
	// log lacks it (or a part of a line, with LogOptions.Parts).
	Data []byte
}

// LogOptions select the records LogEntries reads.
type LogOptions struct {
	// Follow keeps reading new records until the container has exited and
	// everything is read, or ctx ends.
	Follow bool
	// Tail, when not negative, starts at the last Tail records (after
	// Since); negative means all.
	Tail int
	// Since skips records older than it; zero means from the start.
	Since time.Time
	// Parts passes the parts of a line on as they are read instead of
	// joining them into whole lines (a prompt shows before its newline).
	Parts bool
}

// LogEntries calls fn with the container's log records, oldest first
// (rotated files before the current one), as opts select. An error from
// fn ends the read and is returned.
func (r *Runtime) LogEntries(ctx context.Context, id string, opts LogOptions, fn func(LogEntry) error) error {
	c, err := r.Get(id)
	if err != nil {
		return err
	}
	lr := &logReader{opts: opts, fn: fn}
	if opts.Tail >= 0 {
		lr.ring = make([]LogEntry, 0, min(opts.Tail, 4096))
	}
	for i := c.rec.Spec.logMaxFiles() - 1; i >= 1; i-- {
		if err := lr.readFile(filepath.Join(c.logs, logName+"."+strconv.Itoa(i))); err != nil {
			return fmt.Errorf("logs of %s: %w", id, err)
		}
	}
	path := filepath.Join(c.logs, logName)
	f, err := os.Open(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("logs of %s: %w", id, err)
	}
	if f != nil {
		defer func() { f.Close() }()
		if err := lr.read(f, false); err != nil {
			return fmt.Errorf("logs of %s: %w", id, err)
		}
	}
	if !opts.Follow {
		if err := lr.flushPartial(); err != nil {
			return err
		}
		return lr.flushTail()
	}
	if err := lr.flushTail(); err != nil {
		return err
	}
	if err := lr.follow(ctx, c, path, &f); err != nil {
		return err
	}
	return lr.flushPartial()
}

// Logs writes the container's output to w, oldest rotated file first. With
// follow it then keeps writing new output until the container has exited
// and everything is written, or ctx ends.
func (r *Runtime) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	return r.LogEntries(ctx, id, LogOptions{Follow: follow, Tail: -1, Parts: true}, func(e LogEntry) error {
		_, err := w.Write(e.Data)
		return err
	})
}

// logReader parses records and hands on those the options select.
type logReader struct {
	opts LogOptions
	fn   func(LogEntry) error
	ring []LogEntry // the last records while a tail is kept; nil otherwise
	head int        // where the ring's oldest record is, once it is full
	rest []byte     // an incomplete record at the end of a followed file
	// partial holds a line's parts read so far, by stream (stdout, stderr).
	partial [2]*LogEntry
}

func (lr *logReader) readFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return lr.read(f, false)
}

// read takes the records from f's offset to its end. When keepRest, a last
// line without a newline (a record being written) waits for more input.
func (lr *logReader) read(f *os.File, keepRest bool) error {
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(lr.rest) > 0) {
			lr.rest = append(lr.rest, line...)
			if len(lr.rest) > maxRecord {
				lr.rest = lr.rest[:0] // not a record of ours; drop it
			}
			if err == nil {
				line, lr.rest = lr.rest, lr.rest[:0]
				if e := lr.take(line); e != nil {
					return e
				}
			}
			continue
		}
		if err == nil {
			if e := lr.take(line); e != nil {
				return e
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		lr.rest = append(lr.rest, line...)
		if len(lr.rest) > 0 && !keepRest {
			line, lr.rest = append(lr.rest, '\n'), nil
			return lr.take(line)
		}
		return nil
	}
}

// take parses one record line; the parts of a line (partial records) are
// joined, so that what is passed on is whole lines, stamped with the time
// of their first part.
func (lr *logReader) take(line []byte) error {
	e := parseRecord(line)
	e.Data = bytes.Clone(e.Data) // line is the reader's buffer
	s := 0
	if e.Stderr {
		s = 1
	}
	if p := lr.partial[s]; p != nil {
		p.Data = append(p.Data, e.Data...)
		e, lr.partial[s] = *p, nil
	}
	if !lr.opts.Parts && !bytes.HasSuffix(e.Data, []byte("\n")) && len(e.Data) < maxRecord {
		lr.partial[s] = &e
		return nil
	}
	return lr.keep(e)
}

// flushPartial passes on the lines whose end never came.
func (lr *logReader) flushPartial() error {
	for i, p := range lr.partial {
		if p != nil {
			lr.partial[i] = nil
			if err := lr.keep(*p); err != nil {
				return err
			}
		}
	}
	return nil
}

// keep passes a line on, or keeps it while a tail is kept.
func (lr *logReader) keep(e LogEntry) error {
	if !lr.opts.Since.IsZero() && e.Time.Before(lr.opts.Since) {
		return nil
	}
	if lr.ring == nil {
		return lr.fn(e)
	}
	if lr.opts.Tail == 0 {
		return nil
	}
	if len(lr.ring) < lr.opts.Tail {
		lr.ring = append(lr.ring, e)
		return nil
	}
	lr.ring[lr.head] = e
	lr.head = (lr.head + 1) % len(lr.ring)
	return nil
}

// flushTail hands on the kept tail; after it every record passes straight.
func (lr *logReader) flushTail() error {
	ring, head := lr.ring, lr.head
	lr.ring, lr.opts.Tail = nil, -1
	for i := range ring {
		if err := lr.fn(ring[(head+i)%len(ring)]); err != nil {
			return err
		}
	}
	return nil
}

// follow reads what is appended to the current file, and the new file
// after a rotation, until the container has exited and all is read.
func (lr *logReader) follow(ctx context.Context, c *Container, path string, fp **os.File) error {
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		exited := !c.Running()
		if *fp == nil {
			if nf, err := os.Open(path); err == nil {
				*fp = nf
			}
		}
		if f := *fp; f != nil {
			if err := lr.read(f, true); err != nil {
				return err
			}
			if nf := reopenIfRotated(f, path); nf != nil {
				f.Close()
				*fp = nf
				continue
			}
		}
		if exited {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.done: // read the rest at once, not a poll later
		}
	}
}

// parseRecord reads "TIME STREAM TAG DATA\n". A line that is not a record
// (written by an older init) is taken whole, as standard output.
func parseRecord(line []byte) LogEntry {
	raw := LogEntry{Data: line}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return raw
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return raw
	}
	rest := line[sp+1:]
	var e LogEntry
	switch {
	case bytes.HasPrefix(rest, []byte(initconf.LogStdout+" ")):
	case bytes.HasPrefix(rest, []byte(initconf.LogStderr+" ")):
		e.Stderr = true
	default:
		return raw
	}
	rest = rest[len(initconf.LogStdout)+1:]
	if len(rest) < 2 || rest[1] != ' ' || (rest[0] != initconf.LogFull && rest[0] != initconf.LogPartial) {
		return raw
	}
	e.Time, e.Data = ts, rest[2:]
	if rest[0] == initconf.LogPartial {
		e.Data = bytes.TrimSuffix(e.Data, []byte("\n"))
	}
	return e
}

func (s *Spec) logMaxFiles() int {
	if s.LogMaxFiles <= 0 {
		return DefaultLogMaxFiles
	}
	return s.LogMaxFiles
}

// reopenIfRotated returns the new log file when path no longer names the
// file f has open (after f has been read to its end).
func reopenIfRotated(f *os.File, path string) *os.File {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || os.SameFile(a, b) {
		return nil
	}
	nf, err := os.Open(path)
	if err != nil {
		return nil
	}
	return nf
}
