package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where the cgroup filesystems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// Version is the layout of a cgroup hierarchy: 1 or 2.
type Version int

// The two layouts.
const (
	V1 Version = 1
	V2 Version = 2
)

// v1Controllers are the v1 hierarchies a container is placed in.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "devices", "blkio"}

// Resources are the limits of one group. Zero means "no limit".
type Resources struct {
	MemoryBytes int64  // hard memory limit; swap is limited to the same
	CPUQuota    int64  // microseconds of CPU per CPUPeriod
	CPUPeriod   uint64 // microseconds; 100000 when zero and CPUQuota is set
	CPUShares   uint64 // relative weight as Docker's --cpu-shares (2..262144)
	PidsLimit   int64  // maximum number of tasks
}

// Stats is the usage read back from a group.
type Stats struct {
	CPUUsage         time.Duration // total CPU time consumed
	MemoryBytes      uint64        // current usage
	MemoryPeakBytes  uint64        // high-water mark, when the kernel reports it
	MemoryLimitBytes uint64        // 0 when unlimited
	Pids             uint64        // current number of tasks
	PidsLimit        uint64        // 0 when unlimited
	OOMKills         uint64        // processes the OOM killer killed in the group
	// MemoryInactiveFileBytes is the reclaimable page cache within
	// MemoryBytes, which Docker leaves out of the usage it shows.
	MemoryInactiveFileBytes uint64
	BlockReadBytes          uint64 // read from block devices, all devices
	BlockWriteBytes         uint64 // written to block devices, all devices
}

// ErrControllerMissing reports that a limit needs a controller the host
// does not offer in this hierarchy.
var ErrControllerMissing = errors.New("cgroup controller not available")

// Hierarchy is a mounted cgroup tree: a v2 mount point or the directory
// holding the v1 per-controller mounts.
type Hierarchy struct {
	Version Version
	Root    string
}

// Detect reports the layout of the cgroup filesystem at root: v2 when root
// itself is a cgroup2 mount, v1 otherwise (hybrid hosts count as v1).
func Detect(root string) (*Hierarchy, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, fmt.Errorf("detect cgroup version at %s: %w", root, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &Hierarchy{Version: V2, Root: root}, nil
	}
	if _, err := os.Stat(filepath.Join(root, "memory")); err != nil {
		return nil, fmt.Errorf("detect cgroup version at %s: neither cgroup2 nor v1 memory hierarchy: %w", root, err)
	}
	return &Hierarchy{Version: V1, Root: root}, nil
}

// Group is one cgroup. It is plain data so that it can be saved on disk and
// loaded again by a restarted agent.
type Group struct {
	Version Version `json:"version"`
	// Paths maps a v1 controller to its directory; on v2 the single
	// directory is under the key "".
	Paths map[string]string `json:"paths"`
	// Payload is the subgroup of the container's processes, which carries
	// the pids limit (see payload.go); "" when there is none.
	Payload string `json:"payload,omitempty"`
}

// Create makes the group parent/name. An absolute parent is taken from the
// hierarchy's root; a relative one is placed under the cgroup of the calling
// process (per controller on v1), so that a nested agent stays inside its
// own limits.
func (h *Hierarchy) Create(parent, name string) (*Group, error) {
	g := &Group{Version: h.Version, Paths: map[string]string{}}
	var own map[string]string // read once: not per controller
	if !filepath.IsAbs(parent) {
		var err error
		if own, err = ownCgroups(); err != nil {
			return nil, err
		}
	}
	if h.Version == V2 {
		g.Paths[""] = h.dir("", own, parent, name)
	} else {
		for _, c := range v1Controllers {
			if _, err := os.Stat(filepath.Join(h.Root, c)); err != nil {
				continue
			}
			g.Paths[c] = h.dir(c, own, parent, name)
		}
	}
	for _, d := range g.sortedPaths() {
		err := os.MkdirAll(d, 0o755)
		// Another runtime's RemoveParent may take an empty parent away
		// between MkdirAll's steps: make it again.
		for i := 0; errors.Is(err, os.ErrNotExist) && i < 3; i++ {
			err = os.MkdirAll(d, 0o755)
		}
		if err != nil {
			_ = g.Remove()
			return nil, fmt.Errorf("create cgroup %s: %w", d, err)
		}
	}
	allow := g.allowDevices
	if h.Version == V2 {
		allow = g.allowDevicesV2
	}
	if err := allow(); err != nil {
		_ = g.Remove()
		return nil, err
	}
	if err := g.createPayload(); err != nil {
		_ = g.Remove()
		return nil, err
	}
	return g, nil
}

// RemoveParent removes parent's directories (see Create) in every
// hierarchy, deepest first, while they are empty: what a runtime leaves
// when it stops with no container left. A directory still holding a
// group is kept, with those above it; the hierarchy's root and, for a
// relative parent, the caller's own cgroup are never touched.
func (h *Hierarchy) RemoveParent(parent string) error {
	depth := 0
	if p := strings.Trim(filepath.Clean(parent), "/"); p != "" && p != "." {
		depth = len(strings.Split(p, "/"))
	}
	var own map[string]string
	if depth > 0 && !filepath.IsAbs(parent) {
		var err error
		if own, err = ownCgroups(); err != nil {
			return err
		}
	}
	ctrls := v1Controllers
	if h.Version == V2 {
		ctrls = []string{""}
	}
	var errs []error
	for _, c := range ctrls {
		d := h.dir(c, own, parent, "")
		for range depth {
			err := unix.Rmdir(d)
			if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY) {
				break // in use: by this runtime's containers or another's
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup parent %s: %w", d, err))
				break
			}
			d = filepath.Dir(d)
		}
	}
	return errors.Join(errs...)
}

// dir is the directory of parent/name for controller c ("" on v2): under
// the hierarchy's root when parent is absolute, else under own[c], the
// calling process's cgroup.
func (h *Hierarchy) dir(c string, own map[string]string, parent, name string) string {
	base := filepath.Join(h.Root, c)
	if !filepath.IsAbs(parent) {
		p, ok := own[c]
		if !ok {
			p = "/"
		}
		base = filepath.Join(base, p)
	}
	return filepath.Join(base, parent, name)
}

// ownCgroups maps each controller ("" for the v2 entry) to the calling
// process's cgroup path, from /proc/self/cgroup.
func ownCgroups() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroup: %w", err)
	}
	own := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			own[ctrl] = parts[2]
		}
	}
	return own, nil
}

// sortedPaths returns the group's directories in a fixed order.
func (g *Group) sortedPaths() []string {
	var out []string
	for _, c := range append([]string{""}, v1Controllers...) {
		if d, ok := g.Paths[c]; ok {
			out = append(out, d)
		}
	}
	return out
}

// ProcsFiles lists the cgroup.procs files a process writes "0" into to join
// the group itself.
func (g *Group) ProcsFiles() []string {
	var out []string
	for _, d := range g.sortedPaths() {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// Join moves process pid (0: the caller) into the group.
func (g *Group) Join(pid int) error {
	for _, f := range g.ProcsFiles() {
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", f, err)
		}
	}
	return nil
}

// Set writes the limits r into the group.
func (g *Group) Set(r Resources) error {
	if g.Version == V2 {
		return g.setV2(r)
	}
	return g.setV1(r)
}

// Stats reads the group's usage.
func (g *Group) Stats() (Stats, error) {
	if g.Version == V2 {
		return g.statsV2()
	}
	return g.statsV1()
}

// OOMKills reads how many processes the OOM killer killed in the group:
// the one figure of Stats a container's end needs, one file instead of
// Stats' seven.
func (g *Group) OOMKills() (uint64, error) {
	dir, file := g.Paths["memory"], "memory.oom_control"
	if g.Version == V2 {
		dir, file = g.Paths[""], "memory.events"
	}
	if dir == "" {
		return 0, nil
	}
	ev, err := readKeyed(dir, file)
	if err != nil {
		return 0, fmt.Errorf("read OOM kills: %w", err)
	}
	return ev["oom_kill"], nil
}

// Pids lists the processes in the group.
func (g *Group) Pids() ([]int, error) {
	for _, d := range g.sortedPaths() {
		data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("list cgroup %s: %w", d, err)
		}
		var pids []int
		for _, f := range strings.Fields(string(data)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
		return pids, nil
	}
	return nil, nil
}

// Kill kills every process in the group and returns once it is empty or
// the attempts run out.
func (g *Group) Kill() error {
	if g.Version == V2 {
		return g.killV2()
	}
	return g.killEach()
}

// killEach sends SIGKILL to every process in the group until it is empty.
func (g *Group) killEach() error {
	for i := 0; i < 100; i++ {
		pids, err := g.Pids()
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	return fmt.Errorf("kill cgroup %v: processes remain", g.sortedPaths())
}

// Remove deletes the group's directories. It retries briefly while the
// kernel finishes tearing down exited tasks.
func (g *Group) Remove() error {
	var errs []error
	if g.Version == V2 {
		errs = append(errs, g.detachDevicesV2())
	}
	dirs := g.sortedPaths()
	if g.Payload != "" {
		dirs = append([]string{g.Payload}, dirs...)
	}
	for _, d := range dirs {
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func rmdir(d string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", d, err)
}

// Exists reports whether the group's first directory is still there.
func (g *Group) Exists() bool {
	for _, d := range g.sortedPaths() {
		_, err := os.Stat(d)
		return err == nil
	}
	return false
}

func writeFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
		return fmt.Errorf("write %s=%q: %w", filepath.Join(dir, name), value, err)
	}
	return nil
}

func readUint(dir, name string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKeyed reads a "key value" per line file (memory.stat, cpu.stat,
// memory.events, memory.oom_control).
func readKeyed(dir, name string) (map[string]uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return parseKeyed(data), nil
}

func parseKeyed(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
