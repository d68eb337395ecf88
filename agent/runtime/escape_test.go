package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/escapetest"
)

// TestNoHostDescriptorsInContainer: the user process and an exec'd one
// start with descriptors 0-2 only and reach no host file through
// /proc/*/fd, /proc/*/cwd or their working directory (runc's
// CVE-2024-21626 was one leaked directory descriptor).
func TestNoHostDescriptorsInContainer(t *testing.T) {
	e := newEnv(t)
	m := escapetest.Plant(t, e.dir)
	t.Run("run", func(t *testing.T) {
		m.Check(t, e.output(t, e.spec("fds-run", "sh", "-c", m.Script())))
	})
	t.Run("exec", func(t *testing.T) {
		c := e.run(t, e.spec("fds-exec", "sleep", "1000"))
		var out, errOut bytes.Buffer
		code, err := c.Exec(context.Background(), ExecSpec{Args: []string{"sh", "-c", m.Script()}, Stdout: &out, Stderr: &errOut})
		if err != nil || code != 0 {
			t.Fatalf("exec: code %d, err %v: %s%s", code, err, out.String(), errOut.String())
		}
		m.Check(t, out.String())
	})
	t.Run("init descriptors close-on-exec", func(t *testing.T) {
		c, err := e.rt.Get("fds-exec")
		must(t, err)
		fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", c.Pid()))
		must(t, err)
		for _, f := range fds {
			if n, _ := strconv.Atoi(filepath.Base(f)); n <= 2 {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				continue // closed meanwhile
			}
			var flags uint64
			for _, l := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(l, "flags:"); ok {
					flags, _ = strconv.ParseUint(strings.TrimSpace(v), 8, 64)
				}
			}
			if flags&unix.O_CLOEXEC == 0 {
				link, _ := os.Readlink(filepath.Join(filepath.Dir(filepath.Dir(f)), "fd", filepath.Base(f)))
				t.Errorf("the init's descriptor %s (%s) is not close-on-exec", filepath.Base(f), link)
			}
		}
	})
	t.Run("exec with tty", func(t *testing.T) {
		c, err := e.rt.Get("fds-exec")
		must(t, err)
		var out bytes.Buffer
		if _, err := c.Exec(context.Background(), ExecSpec{Args: []string{"sh", "-c", m.Script()}, TTY: true, Stdout: &out}); err != nil {
			t.Fatalf("exec: %v: %s", err, out.String())
		}
		m.Check(t, strings.ReplaceAll(out.String(), "\r", ""))
	})
}

// TestWorkdirThroughDescriptorRefused: a working directory naming one of
// the init's descriptors (runc's `-w /proc/self/fd/N`) never puts a
// process on a host directory, for the container and for an exec.
func TestWorkdirThroughDescriptorRefused(t *testing.T) {
	e := newEnv(t)
	m := escapetest.Plant(t, e.dir)
	for _, fd := range []string{"3", "4", "5"} {
		s := e.spec("cwd-"+fd, "sh", "-c", "pwd; cat "+strings.Repeat("../", 40)+strings.TrimPrefix(m.Path, "/"))
		s.Cwd = "/proc/self/fd/" + fd
		c, err := e.rt.Run(context.Background(), s)
		if err != nil {
			if !strings.Contains(err.Error(), "working directory") {
				t.Errorf("cwd %s refused without naming the working directory: %v", s.Cwd, err)
			}
			continue
		}
		e.wait(t, c)
		if out := e.logs(t, s.ID); strings.Contains(out, m.Content) {
			t.Errorf("with cwd %s the container read the host file %s: %q", s.Cwd, m.Path, out)
		}
	}
	c := e.run(t, e.spec("cwd-exec", "sleep", "1000"))
	var out bytes.Buffer
	_, err := c.Exec(context.Background(), ExecSpec{
		Args: []string{"sh", "-c", "cat " + strings.Repeat("../", 40) + strings.TrimPrefix(m.Path, "/")},
		Cwd:  "/proc/self/fd/4", Stdout: &out,
	})
	if strings.Contains(out.String(), m.Content) {
		t.Errorf("exec with cwd /proc/self/fd/4 read the host file: %q", out.String())
	}
	if err == nil || !strings.Contains(err.Error(), "working directory") {
		t.Errorf("exec with cwd /proc/self/fd/4: err %v, want it refused naming the working directory", err)
	}
}
