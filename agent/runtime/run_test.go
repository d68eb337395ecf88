package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunEchoWritesLog(t *testing.T) {
	e := newEnv(t)
	out := e.output(t, e.spec("echo", "echo", "hi"))
	if out != "hi\n" {
		t.Fatalf("log = %q, want %q", out, "hi\n")
	}
}

func TestExitCodePropagates(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("exit7", "sh", "-c", "echo oops >&2; exit 7"))
	st := e.wait(t, c)
	if st.Code != 7 || st.Reason != ReasonError {
		t.Fatalf("status = %+v, want code 7 reason Error", st)
	}
	if got := e.logs(t, "exit7"); got != "oops\n" {
		t.Fatalf("stderr in log = %q", got)
	}
}

func TestCommandNotFoundLeavesNothing(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want error
		msg  string
	}{
		{[]string{"nosuchcmd"}, ErrCommandNotFound, "not found in the image"},
		{[]string{"/bin/nosuch"}, ErrCommandNotFound, "/bin/nosuch"},
		{[]string{"/etc/notexec"}, ErrPermissionDenied, "not executable"},
		{[]string{"/etc"}, ErrPermissionDenied, "directory"},
	} {
		_, err := e.rt.Run(context.Background(), e.spec("bad", tc.args...))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("run %v: err = %v, want %v mentioning %q", tc.args, err, tc.want, tc.msg)
		}
		assertNothingLeft(t, e, "bad")
	}
}

func assertNothingLeft(t *testing.T, e *env, id string) {
	t.Helper()
	for _, d := range []string{e.rt.containerDir(id), e.rt.logDir(id)} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s of %s left behind: %v", d, id, err)
		}
	}
	if _, err := e.rt.Get(id); err == nil {
		t.Fatalf("%s still listed", id)
	}
	for _, ctrl := range []string{"memory", "pids", "cpu", ""} { // "": the v2 hierarchy
		g, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctrl, "*", e.parent, id))
		g2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctrl, "*", "*", e.parent, id))
		g3, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctrl, e.parent, id))
		if len(g)+len(g2)+len(g3) > 0 {
			t.Fatalf("cgroup of %s left behind: %v %v %v", id, g, g2, g3)
		}
	}
	if m := e.leakedMounts(); len(m) > 0 {
		t.Fatalf("mounts left behind: %v", m)
	}
}

func TestDuplicateAndInvalidSpecs(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("dup", "sleep", "100"))
	if _, err := e.rt.Run(context.Background(), e.spec("dup", "true")); !errors.Is(err, ErrExists) {
		t.Fatalf("second run with same id: %v, want ErrExists", err)
	}
	bad := e.spec("x y", "true")
	if _, err := e.rt.Run(context.Background(), bad); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("bad id: %v", err)
	}
	noRoot := e.spec("noroot", "true")
	noRoot.Rootfs = "/nonexistent"
	if _, err := e.rt.Run(context.Background(), noRoot); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("missing rootfs: %v", err)
	}
	if _, err := c.Stop(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}
