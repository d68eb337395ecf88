package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/e2ecluster"
	"berth/internal/escapetest"
	"berth/internal/testimage"
)

// buildAgent builds berth-agent as a user gets it (flags as `make build`).
func buildAgent(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berth-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRunLikeDockerRun runs real containers through `berth-agent run`.
func TestRunLikeDockerRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("berth-agent run needs root (namespaces, cgroups, mounts)")
	}
	fx := testimage.Serve(t)
	bin := buildAgent(t)
	data := t.TempDir()
	cgroups := e2ecluster.TestCgroupParent(t)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"run", "--data-dir", data, "--rm", "--cgroup-parent", cgroups}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}

	out, errOut, code := run("--hostname", "box", fx.Busybox.Tag, "sh", "-c", "echo hello from $(hostname); exit 3")
	if code != 3 || !strings.Contains(out, "hello from box") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "pulling") {
		t.Errorf("no pull progress on stderr: %q", errOut)
	}

	out, errOut, code = run("--memory", "32M", fx.Busybox.ByDigest, "cat", "/proc/1/cmdline")
	if code != 0 || !strings.Contains(out, "berth-init") {
		t.Fatalf("by digest: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Nothing of the host is reachable through a descriptor or the
	// working directory (runc's CVE-2024-21626).
	marker := escapetest.Plant(t, data)
	out, errOut, code = run("-q", fx.Busybox.Tag, "sh", "-c", marker.Script())
	if code != 0 {
		t.Fatalf("descriptor probe: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	marker.Check(t, out)

	_, errOut, code = run("-q", fx.Busybox.Tag, "nosuchcmd")
	if code != 127 || !strings.Contains(errOut, `"nosuchcmd" is not in the image`) {
		t.Fatalf("missing command: exit %d, stderr %q", code, errOut)
	}

	_, errOut, code = run(fx.Registry.Addr() + "/nope:latest")
	if code != 125 || !strings.Contains(errOut, "not found in registry") {
		t.Fatalf("unknown image: exit %d, stderr %q", code, errOut)
	}

	// Docker's default seccomp profile, unless --security-opt says otherwise.
	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW",
	  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `grep '^Seccomp:' /proc/self/status; unshare -U -r true 2>/dev/null; echo "unshare=$?"; mkdir /tmp/d 2>/dev/null; echo "mkdir=$?"`
	for _, tc := range []struct {
		opts []string
		want string
	}{
		{nil, "Seccomp:\t2\nunshare=1\nmkdir=0\n"},
		{[]string{"--security-opt", "seccomp=unconfined"}, "Seccomp:\t0\nunshare=0\nmkdir=0\n"},
		{[]string{"--security-opt", "seccomp=" + profile}, "Seccomp:\t2\nunshare=0\nmkdir=1\n"},
	} {
		args := append(append([]string{"-q"}, tc.opts...), fx.Busybox.Tag, "--", "sh", "-c", script)
		out, errOut, code := run(args...)
		if code != 0 || out != tc.want {
			t.Errorf("run %q: exit %d, stdout %q (want %q), stderr %q", tc.opts, code, out, tc.want, errOut)
		}
	}
	badProfile := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badProfile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "DENY"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for opt, msg := range map[string]string{
		"apparmor=unconfined":       `security_opts[0]: "apparmor=unconfined" is not supported`,
		"seccomp=" + badProfile:     `syscalls[0]: action: "DENY" is not an action`,
		"seccomp=/nonexistent.json": "read the seccomp profile",
	} {
		_, errOut, code := run("-q", "--security-opt", opt, fx.Busybox.Tag, "true")
		if code != 125 || !strings.Contains(errOut, msg) {
			t.Errorf("--security-opt %s: exit %d, stderr %q; want 125 and %q", opt, code, errOut, msg)
		}
	}

	for _, dir := range []string{runDir + "/containers", "images/containers"} {
		entries, _ := os.ReadDir(filepath.Join(data, dir))
		if len(entries) != 0 {
			t.Errorf("--rm left %d entries in %s", len(entries), dir)
		}
	}
	if left := e2ecluster.CgroupDirs(cgroups); len(left) != 0 {
		t.Errorf("--rm left %d cgroups under --cgroup-parent: %q", len(left), left)
	}
}

// TestRunOffline runs an image already pulled with the registry stopped,
// under each --pull policy, as docker run --pull does.
func TestRunOffline(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("berth-agent run needs root (namespaces, cgroups, mounts)")
	}
	bin, data, ref := pulledOffline(t)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"run", "--data-dir", data, "--rm"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	for _, pull := range [][]string{nil, {"--pull", "missing"}, {"--pull", "never"}} {
		args := append(pull, ref, "echo", "offline")
		out, errOut, code := run(args...)
		if code != 0 || out != "offline\n" || errOut != "" {
			t.Errorf("registry stopped, %q: exit %d, stdout %q, stderr %q; want 0, \"offline\\n\" and nothing on stderr", pull, code, out, errOut)
		}
	}
	unknown := strings.Replace(ref, "/busybox:", "/nope:", 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pull", "never", unknown}, `image "` + unknown + `" has not been pulled on this node (--pull never: pull it first`},
		{[]string{"--pull", "always", ref}, "unreachable"},
		{[]string{"--pull", "always", ref}, "--pull always; --pull missing runs an image already here"},
		{[]string{"--pull", "missing", unknown}, "unreachable"},
		{[]string{"--pull", "sometimes", ref}, `--pull: pull policy "sometimes": want missing, always or never`},
	} {
		_, errOut, code := run(append([]string{"-q"}, append(tc.args, "true")...)...)
		if code != 125 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 125 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
