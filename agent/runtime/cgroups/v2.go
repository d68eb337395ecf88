package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// controllersFor lists the v2 controllers limits r need.
func controllersFor(r Resources) []string {
	var out []string
	if r.MemoryBytes > 0 {
		out = append(out, "memory")
	}
	if r.CPUQuota > 0 || r.CPUShares > 0 {
		out = append(out, "cpu")
	}
	if r.PidsLimit > 0 {
		out = append(out, "pids")
	}
	return out
}

// SharesToWeight converts Docker's cpu.shares (2..262144, default 1024)
// to a v2 cpu.weight (1..10000, default 100), as runc does.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// CPUMax renders the v2 cpu.max value for r.
func CPUMax(r Resources) string {
	if r.CPUQuota <= 0 {
		return "max " + strconv.FormatUint(period(r), 10)
	}
	return strconv.FormatInt(r.CPUQuota, 10) + " " + strconv.FormatUint(period(r), 10)
}

func (g *Group) setV2(r Resources) error {
	d := g.Paths[""]
	if err := enableControllers(d, controllersFor(r)); err != nil {
		return err
	}
	enableForStats(d)
	if r.MemoryBytes > 0 {
		v := strconv.FormatInt(r.MemoryBytes, 10)
		if err := writeFile(d, "memory.max", v); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(d, "memory.swap.max")); err == nil {
			if err := writeFile(d, "memory.swap.max", "0"); err != nil {
				return err
			}
		}
	}
	if r.CPUQuota > 0 {
		if err := writeFile(d, "cpu.max", CPUMax(r)); err != nil {
			return err
		}
	}
	if r.CPUShares > 0 {
		if err := writeFile(d, "cpu.weight", strconv.FormatUint(SharesToWeight(r.CPUShares), 10)); err != nil {
			return err
		}
	}
	if r.PidsLimit > 0 {
		if err := g.setPidsLimit(r.PidsLimit); err != nil {
			return err
		}
	}
	return nil
}

// enableControllers turns ctrls on in the subtree_control of every
// ancestor of dir up to the hierarchy root, top-down: a group offers a
// controller (cgroup.controllers) only once its parent has enabled it, so
// each level is checked just before it is written.
func enableControllers(dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	var chain []string
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, "cgroup.subtree_control")); err != nil {
			break
		}
		chain = append([]string{p}, chain...)
		if _, err := os.Stat(filepath.Join(p, "cgroup.type")); err != nil {
			break // the root has no cgroup.type
		}
	}
	for _, p := range chain {
		offered, err := os.ReadFile(filepath.Join(p, "cgroup.controllers"))
		if err != nil {
			return fmt.Errorf("cgroup v2 controllers of %s: %w", p, err)
		}
		have := strings.Fields(string(offered))
		cur, _ := os.ReadFile(filepath.Join(p, "cgroup.subtree_control"))
		var add []string
		for _, c := range ctrls {
			if !contains(have, c) {
				return fmt.Errorf("cgroup v2 controller %q in %s (offered: %q): %w", c, p, strings.TrimSpace(string(offered)), ErrControllerMissing)
			}
			if !contains(strings.Fields(string(cur)), c) {
				add = append(add, "+"+c)
			}
		}
		if len(add) > 0 {
			if err := writeFile(p, "cgroup.subtree_control", strings.Join(add, " ")); err != nil {
				return err
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (g *Group) statsV2() (Stats, error) {
	var s Stats
	d := g.Paths[""]
	cpu, err := readKeyed(d, "cpu.stat")
	if err != nil {
		return s, fmt.Errorf("cgroup v2 stats: %w", err)
	}
	s.CPUUsage = time.Duration(cpu["usage_usec"]) * time.Microsecond
	var errs []error
	if v, err := readUint(d, "memory.current"); err == nil {
		s.MemoryBytes = v
		s.MemoryPeakBytes, _ = readUint(d, "memory.peak")
		s.MemoryLimitBytes, _ = readUint(d, "memory.max")
		ev, err := readKeyed(d, "memory.events")
		errs = append(errs, err)
		s.OOMKills = ev["oom_kill"]
		s.MemoryInactiveFileBytes = readInactiveFile(d, V2)
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if v, err := readUint(g.pidsDir(), "pids.current"); err == nil {
		s.Pids = v
		s.PidsLimit, _ = readUint(g.pidsDir(), "pids.max")
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	} else {
		s.Pids = uint64(countProcs(d))
	}
	s.BlockReadBytes, s.BlockWriteBytes = ioV2(d)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("cgroup v2 stats: %w", err)
	}
	return s, nil
}

func countProcs(d string) int {
	data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(data)))
}

// killV2 kills the whole group at once, so that nothing in it can fork
// while its processes are signalled one by one: cgroup.kill (Linux 5.14)
// does it in the kernel, descendants included; older kernels freeze the
// group first. (The group's cgroup.procs lists the processes of its
// threaded payload too, so killEach sees them.)
func (g *Group) killV2() error {
	d := g.Paths[""]
	if _, err := os.Stat(filepath.Join(d, "cgroup.kill")); err != nil {
		return g.killFrozen()
	}
	if err := writeFile(d, "cgroup.kill", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return g.killEach() // waits for the kernel's kill to finish
}

// killFrozen freezes the group (cgroup.freeze, Linux 5.2), kills each
// process and thaws it. A frozen process cannot fork, and children of a
// fork under way are born frozen, so the listing misses none for long;
// SIGKILL reaches frozen processes.
func (g *Group) killFrozen() error {
	d := g.Paths[""]
	if err := writeFile(d, "cgroup.freeze", "1"); err == nil {
		defer writeFile(d, "cgroup.freeze", "0") // the group may be gone by now
	}
	return g.killEach()
}
