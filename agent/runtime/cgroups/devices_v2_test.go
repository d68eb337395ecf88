package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"golang.org/x/sys/unix"
)

func TestDeviceRules(t *testing.T) {
	rules, err := deviceRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != len(defaultDevices)+1 {
		t.Fatalf("%d rules for %d allow lines", len(rules), len(defaultDevices))
	}
	deny := rules[0]
	if deny.Allow || deny.Type != devconfig.WildcardDevice || deny.Permissions != "rwm" {
		t.Errorf("first rule = %+v, want deny of all devices (v1's devices.deny a)", deny)
	}
	for i, r := range rules[1:] {
		if !r.Allow || r.CgroupString() != defaultDevices[i] {
			t.Errorf("rule %d = %q allow=%v, want allow %q", i, r.CgroupString(), r.Allow, defaultDevices[i])
		}
	}
	for _, tc := range []struct {
		in   string
		want devconfig.Rule
	}{
		{"c 1:3 rwm", devconfig.Rule{Type: 'c', Major: 1, Minor: 3, Permissions: "rwm", Allow: true}},
		{"b *:* m", devconfig.Rule{Type: 'b', Major: -1, Minor: -1, Permissions: "m", Allow: true}},
		{"c 136:* rw", devconfig.Rule{Type: 'c', Major: 136, Minor: -1, Permissions: "rw", Allow: true}},
	} {
		got, err := parseDeviceRule(tc.in)
		if err != nil || *got != tc.want {
			t.Errorf("parseDeviceRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "c 1:3", "x 1:3 rwm", "a *:* rwm", "c 1 rwm", "c 1:z rwm", "c 1:3 rwx", "c 1:3 -", "c -1:3 r", "cc 1:3 r"} {
		if r, err := parseDeviceRule(bad); err == nil {
			t.Errorf("parseDeviceRule(%q) = %+v, want an error", bad, r)
		}
	}
}

// v2Root returns a cgroup2 mount to test on: the cgroup root on a v2 host,
// the unified hierarchy on a hybrid one. A device program attaches to any
// cgroup2 directory whatever controllers are bound there, and the kernel
// runs it for the device accesses of the processes in it.
func v2Root(t *testing.T) *Hierarchy {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and load BPF programs")
	}
	for _, root := range []string{DefaultRoot, DefaultRoot + "/unified"} {
		if h, err := Detect(root); err == nil && h.Version == V2 {
			return h
		}
	}
	t.Skip("no cgroup2 mount at " + DefaultRoot + " or " + DefaultRoot + "/unified")
	return nil
}

// testGroup creates a v2 group under a parent named for this test process,
// sweeping what a crashed run left, and removes both at the end.
func testGroup(t *testing.T, h *Hierarchy, name string) *Group {
	t.Helper()
	sweepStaleGroups(h.Root)
	parent := "/berth-test-" + strconv.Itoa(os.Getpid())
	g, err := h.Create(parent, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Kill()
		g.Remove()
		os.Remove(filepath.Join(h.Root, parent))
	})
	return g
}

// sweepStaleGroups removes test groups whose process is gone.
func sweepStaleGroups(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "berth-test-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), "berth-test-"), "-", 2)[0])
		if err != nil || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		subs, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				(&Group{Version: V2, Paths: map[string]string{"": s}}).Remove()
			}
		}
		unix.Rmdir(d)
	}
}

// hostBlockDevice makes, in dir, a node for a block device of this host
// that this test process itself can open: a disk if it may, else a loop
// device. Without a device filter the node opens, so the group's EPERM is
// the filter's doing. It returns the node and the device's MAJOR:MINOR.
func hostBlockDevice(t *testing.T, dir string) (string, string) {
	t.Helper()
	devs, _ := filepath.Glob("/sys/block/*/dev")
	var disks, loops []string
	for _, d := range devs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if name := filepath.Base(filepath.Dir(d)); strings.HasPrefix(name, "loop") {
			loops = append(loops, strings.TrimSpace(string(b)))
		} else {
			disks = append(disks, strings.TrimSpace(string(b)))
		}
	}
	node := filepath.Join(dir, "host-disk")
	for _, dev := range append(disks, loops...) {
		os.Remove(node)
		must(t, runProbe("mknod-b "+node+" "+dev))
		if err := runProbe("open " + node); err == nil {
			return node, dev
		}
	}
	t.Skip("no block device on this host that the test may open, to show the filter denies it")
	return "", ""
}

// probeEnv carries the probe list to TestDeviceProbeChild.
const probeEnv = "BERTH_TEST_DEVICE_PROBE"

// TestDeviceProbeChild is not a test of its own: TestDeviceFilterV2 runs
// the test binary as a process inside a cgroup with only this test, which
// tries each device access in $BERTH_TEST_DEVICE_PROBE and prints the result.
func TestDeviceProbeChild(t *testing.T) {
	list := os.Getenv(probeEnv)
	if list == "" {
		t.Skip("runs only as TestDeviceFilterV2's child")
	}
	for _, probe := range strings.Split(list, ";") {
		fmt.Printf("probe %s %s\n", probe, errName(runProbe(probe)))
	}
}

// runProbe does one access: "open PATH", "write PATH", "mknod-b PATH MAJ:MIN",
// "mknod-c PATH MAJ:MIN" or "pty" (open /dev/ptmx, then its /dev/pts node).
func runProbe(probe string) error {
	f := strings.Fields(probe)
	switch f[0] {
	case "open", "write":
		mode := unix.O_RDONLY
		if f[0] == "write" {
			mode = unix.O_RDWR
		}
		fd, err := unix.Open(f[1], mode|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "mknod-b", "mknod-c":
		maj, min, _ := strings.Cut(f[2], ":")
		a, _ := strconv.Atoi(maj)
		b, _ := strconv.Atoi(min)
		typ := uint32(unix.S_IFBLK)
		if f[0] == "mknod-c" {
			typ = unix.S_IFCHR
		}
		return unix.Mknod(f[1], typ|0o600, int(unix.Mkdev(uint32(a), uint32(b))))
	case "pty":
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(m)
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
		if err != nil {
			return err
		}
		s, err := unix.Open("/dev/pts/"+strconv.Itoa(n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(s)
		}
		return err
	}
	return fmt.Errorf("unknown probe %q", probe)
}

func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// TestDeviceFilterV2 runs a process in a v2 group and checks that the
// group's device program lets it use exactly Docker's default devices: the
// usual character nodes and ptys work, mknod works, and opening a host
// block device (a node made outside, or one it made itself) or another
// character device fails with EPERM. Removing the group frees the program.
func TestDeviceFilterV2(t *testing.T) {
	h := v2Root(t)
	var before unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_MEMLOCK, &before))
	g := testGroup(t, h, "devices")
	var after unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_MEMLOCK, &after))
	if after != before {
		t.Errorf("RLIMIT_MEMLOCK %+v after attaching the filter, was %+v: containers would inherit it", after, before)
	}
	ids := attachedPrograms(t, g)
	if len(ids) != 1 {
		t.Errorf("%d device programs attached to %s, want 1", len(ids), g.Paths[""])
	}

	tmp := t.TempDir()
	hostNode, dev := hostBlockDevice(t, tmp)
	t.Logf("host block device %s", dev)
	probes := []struct {
		probe, want string
	}{
		{"write /dev/null", "ok"},
		{"open /dev/zero", "ok"},
		{"write /dev/full", "ok"},
		{"open /dev/random", "ok"},
		{"open /dev/urandom", "ok"},
		{"pty", "ok"},
		{"open " + hostNode, "EPERM"},
		{"write " + hostNode, "EPERM"},
		{"mknod-b " + tmp + "/made-disk " + dev, "ok"},
		{"open " + tmp + "/made-disk", "EPERM"},
		{"mknod-c " + tmp + "/made-kmsg 1:11", "ok"},
		{"open " + tmp + "/made-kmsg", "EPERM"},
	}
	if _, err := os.Stat("/dev/tty"); err == nil {
		probes = append(probes, struct{ probe, want string }{"write /dev/tty", "not EPERM"})
	}
	var list []string
	for _, p := range probes {
		list = append(list, p.probe)
	}
	out := runInGroup(t, g, strings.Join(list, ";"))
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "probe "); ok {
			i := strings.LastIndexByte(rest, ' ')
			got[rest[:i]] = rest[i+1:]
		}
	}
	for _, p := range probes {
		res, ok := got[p.probe]
		switch {
		case !ok:
			t.Errorf("%s: no result in the child's output:\n%s", p.probe, out)
		case p.want == "not EPERM" && res == "EPERM", p.want != "not EPERM" && res != p.want:
			t.Errorf("%s in the group: %s, want %s", p.probe, res, p.want)
		}
	}

	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	waitFreed(t, ids)
}

// TestDeviceFilterStaysWhileProcessesRun checks that removing a group that
// still has processes keeps their device filter.
func TestDeviceFilterStaysWhileProcessesRun(t *testing.T) {
	h := v2Root(t)
	g := testGroup(t, h, "busy")
	cmd := startInGroup(t, g, exec.Command("sleep", "100"))
	defer cmd.Wait()
	if err := g.Remove(); err == nil {
		t.Fatal("removed a group with a process in it")
	}
	if ids := attachedPrograms(t, g); len(ids) != 1 {
		t.Fatalf("%d device programs on a group with a process, want 1", len(ids))
	}
	must(t, g.Kill())
}

func attachedPrograms(t *testing.T, g *Group) []ebpf.ProgramID {
	t.Helper()
	fd, err := unix.Open(g.Paths[""], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	ids, err := deviceProgramIDs(fd)
	must(t, err)
	return ids
}

// waitFreed waits until the kernel has freed the programs (freeing is
// deferred to an RCU grace period).
func waitFreed(t *testing.T, ids []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("device program %d still loaded after the group was removed (err %v)", id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// runInGroup runs TestDeviceProbeChild in g and returns its output.
func runInGroup(t *testing.T, g *Group, probes string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceProbeChild$", "-test.v")
	cmd.Env = append(os.Environ(), probeEnv+"="+probes)
	cmd.Stdout, cmd.Stderr = &out, &out
	startInGroup(t, g, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe child: %v\n%s", err, out.String())
	}
	return out.String()
}

// startInGroup starts cmd directly inside g (clone3 CLONE_INTO_CGROUP), so
// that it makes no access before it is there.
func startInGroup(t *testing.T, g *Group, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	fd, err := unix.Open(g.Paths[""], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	must(t, cmd.Start())
	return cmd
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
