package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// probeBinary is testdata/sysprobe, built once per test process.
var probeBinary struct {
	once sync.Once
	path string
	err  error
}

// addProbe puts the sysprobe program and the busybox applets the seccomp
// tests use into the rootfs.
func addProbe(t *testing.T, rootfs string) {
	t.Helper()
	probeBinary.once.Do(func() {
		// The cgroup v2 VM has no go tool: it is built there beforehand.
		if pre := os.Getenv("BERTH_SYSPROBE"); pre != "" {
			probeBinary.path = pre
			return
		}
		// Named for this test process, so that sweep removes it.
		dir, err := os.MkdirTemp("", testPrefix+strconv.Itoa(os.Getpid())+"-sysprobe-")
		if err != nil {
			probeBinary.err = err
			return
		}
		probeBinary.path = filepath.Join(dir, "sysprobe")
		cmd := exec.Command("go", "build", "-trimpath", "-o", probeBinary.path, "./testdata/sysprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeBinary.err = &buildError{err, out}
		}
	})
	if probeBinary.err != nil {
		t.Fatalf("build testdata/sysprobe: %v", probeBinary.err)
	}
	data, err := os.ReadFile(probeBinary.path)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(rootfs, "bin/sysprobe"), data, 0o755))
	must(t, os.MkdirAll(filepath.Join(rootfs, "probe-mnt"), 0o755))
	for _, a := range []string{"unshare", "httpd", "wget"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + ": " + string(e.out) }

// probeScript reports the seccomp mode, what unshare and sysprobe get, and
// whether everyday busybox (sh, ls, ps, sleep, a loopback HTTP fetch) works.
const probeScript = `grep '^Seccomp:' /proc/self/status
unshare -U -r true 2>/dev/null; echo "unshare=$?"
sysprobe
mkdir -p /tmp/www && echo hello > /tmp/www/index.html
httpd -p 127.0.0.1:8080 -h /tmp/www
ls / >/dev/null && ps >/dev/null && sleep 0.01 && wget -q -O- http://127.0.0.1:8080/ && echo busybox=ok`

// probeFields parses "key=value" words and the "Seccomp:\tN" line of out.
func probeFields(out string) map[string]string {
	f := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			f["Seccomp"] = strings.TrimSpace(v)
			continue
		}
		for _, w := range strings.Fields(l) {
			if k, v, ok := strings.Cut(w, "="); ok {
				f[k] = v
			}
		}
	}
	return f
}

func expectFields(t *testing.T, what, out string, want map[string]string) {
	t.Helper()
	got := probeFields(out)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q\noutput:\n%s", what, k, got[k], v, out)
		}
	}
}

// deniedByDefault is what Docker's default profile answers for a
// container with the default capabilities.
var deniedByDefault = map[string]string{
	"Seccomp":              "2",
	"unshare":              "1",
	"keyctl":               "EPERM",
	"add_key":              "EPERM",
	"mount":                "EPERM",
	"clone3":               "ENOSYS",
	"socket_vsock":         "EPERM",
	"socket_inet":          "ok",
	"personality_query":    "ok",
	"personality_norandom": "EPERM",
	"fork":                 "ok",
	"clone_newuser":        "EPERM",
	"busybox":              "ok",
}

// otherABIsDenied is what the filter answers to calls of the i386 and x32
// ABIs (sysprobe makes them on amd64 only): Docker's profile covers both.
var otherABIsDenied = map[string]string{
	"i386_getpid": "ok", "i386_keyctl": "EPERM", "x32_getpid": "ENOSYS", "x32_keyctl": "EPERM",
}

func TestSeccompDefaultProfile(t *testing.T) {
	e := newEnv(t)
	addProbe(t, e.rootfs)
	out := e.output(t, e.spec("sc-default", "sh", "-c", probeScript))
	expectFields(t, "default container", out, deniedByDefault)
	if goruntime.GOARCH == "amd64" {
		expectFields(t, "default container, other ABIs", out, otherABIsDenied)
	}
}

func TestSeccompFiltersExec(t *testing.T) {
	e := newEnv(t)
	addProbe(t, e.rootfs)
	c := e.run(t, e.spec("sc-exec", "sleep", "1000"))
	var out, errb bytes.Buffer
	code, err := c.Exec(context.Background(), ExecSpec{Args: []string{"sh", "-c", probeScript}, Stdout: &out, Stderr: &errb})
	must(t, err)
	if code != 0 {
		t.Fatalf("exec exited %d: %s %s", code, out.String(), errb.String())
	}
	expectFields(t, "exec", out.String(), deniedByDefault)
	var tty bytes.Buffer
	_, err = c.Exec(context.Background(), ExecSpec{Args: []string{"grep", "^Seccomp:", "/proc/self/status"}, TTY: true, Stdout: &tty})
	must(t, err)
	expectFields(t, "tty exec", tty.String(), map[string]string{"Seccomp": "2"})
}

func TestSeccompUnconfined(t *testing.T) {
	e := newEnv(t)
	addProbe(t, e.rootfs)
	s := e.spec("sc-unconfined", "sh", "-c", probeScript)
	s.Seccomp = "unconfined"
	out := e.output(t, s)
	expectFields(t, "unconfined container", out, map[string]string{
		"Seccomp": "0", "unshare": "0", "keyctl": "ok", "add_key": "ok", "clone3": "EINVAL", "busybox": "ok",
	})
	if goruntime.GOARCH == "amd64" {
		expectFields(t, "unconfined container, other ABIs", out, map[string]string{"i386_keyctl": "ok", "x32_keyctl": "ENOSYS"})
	}
	c := e.run(t, e.spec("sc-default-exec", "sleep", "1000"))
	s2 := e.spec("sc-unconfined-2", "sleep", "1000")
	s2.Seccomp = "unconfined"
	c2 := e.run(t, s2)
	for _, x := range []struct {
		c    *Container
		want string
	}{{c, "2"}, {c2, "0"}} {
		var out bytes.Buffer
		_, err := x.c.Exec(context.Background(), ExecSpec{Args: []string{"grep", "^Seccomp:", "/proc/self/status"}, Stdout: &out})
		must(t, err)
		expectFields(t, "exec in "+x.c.ID(), out.String(), map[string]string{"Seccomp": x.want})
	}
}

// denyMkdir is a custom profile: everything allowed but mkdir.
const denyMkdir = `{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`

func TestSeccompCustomProfile(t *testing.T) {
	e := newEnv(t)
	s := e.spec("sc-custom", "sh", "-c", `grep '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1; echo "mkdir=$?"; touch /tmp/f && echo touch=ok`)
	s.Seccomp = denyMkdir
	out := e.output(t, s)
	expectFields(t, "custom profile", out, map[string]string{"Seccomp": "2", "mkdir": "1", "touch": "ok"})
	if !strings.Contains(out, "Permission denied") {
		t.Fatalf("mkdir under the profile should fail with EACCES (errnoRet 13): %s", out)
	}
}

func TestSeccompInvalidProfileRefused(t *testing.T) {
	e := newEnv(t)
	s := e.spec("sc-bad", "true")
	s.Seccomp = `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALOW"}]}`
	_, err := e.rt.Run(context.Background(), s)
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), `syscalls[0]: action: "SCMP_ACT_ALOW" is not an action`) {
		t.Fatalf("run with a bad profile: %v, want ErrInvalidSpec naming syscalls[0].action", err)
	}
	assertNothingLeft(t, e, "sc-bad")
}
