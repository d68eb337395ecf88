package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// followPoll is how often a followed log is checked for new output.
const followPoll = 50 * time.Millisecond

// Logs writes the container's output to w, oldest rotated file first. With
// follow it then keeps writing new output until the container has exited
// and everything is written, or ctx ends.
func (r *Runtime) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	c, err := r.Get(id)
	if err != nil {
		return err
	}
	dir := c.dir
	for i := c.rec.Spec.logMaxFiles() - 1; i >= 1; i-- {
		if err := copyFile(filepath.Join(dir, logName+"."+strconv.Itoa(i)), w); err != nil {
			return fmt.Errorf("logs of %s: %w", id, err)
		}
	}
	f, err := os.Open(filepath.Join(dir, logName))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logs of %s: %w", id, err)
	}
	defer func() { f.Close() }()
	if _, err := io.Copy(w, f); err != nil || !follow {
		return err
	}
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		exited := !c.Running()
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if nf := reopenIfRotated(f, filepath.Join(dir, logName)); nf != nil {
			f.Close()
			f = nf
			continue
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

func copyFile(path string, w io.Writer) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
