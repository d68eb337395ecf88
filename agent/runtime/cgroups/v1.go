package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// defaultDevices is Docker's device allow-list: the usual character nodes,
// pseudo-terminals and tun, and mknod (not open) of anything.
var defaultDevices = []string{
	"c *:* m", "b *:* m",
	"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
}

// allowDevices denies all devices and allows Docker's default list,
// one rule per write(2) on one open file.
func (g *Group) allowDevices() error {
	d, ok := g.Paths["devices"]
	if !ok {
		return nil
	}
	if err := writeFile(d, "devices.deny", "a"); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(d, "devices.allow"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Join(d, "devices.allow"), err)
	}
	defer f.Close()
	for _, rule := range defaultDevices {
		if _, err := f.WriteString(rule); err != nil {
			return fmt.Errorf("write %s=%q: %w", filepath.Join(d, "devices.allow"), rule, err)
		}
	}
	return nil
}

func (g *Group) setV1(r Resources) error {
	if r.MemoryBytes > 0 {
		d, err := g.v1("memory")
		if err != nil {
			return err
		}
		v := strconv.FormatInt(r.MemoryBytes, 10)
		if err := writeFile(d, "memory.limit_in_bytes", v); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeFile(d, "memory.memsw.limit_in_bytes", v); err != nil {
				return err
			}
		}
	}
	if r.CPUQuota > 0 || r.CPUShares > 0 {
		d, err := g.v1("cpu")
		if err != nil {
			return err
		}
		if r.CPUQuota > 0 {
			if err := writeFile(d, "cpu.cfs_period_us", strconv.FormatUint(period(r), 10)); err != nil {
				return err
			}
			if err := writeFile(d, "cpu.cfs_quota_us", strconv.FormatInt(r.CPUQuota, 10)); err != nil {
				return err
			}
		}
		if r.CPUShares > 0 {
			if err := writeFile(d, "cpu.shares", strconv.FormatUint(r.CPUShares, 10)); err != nil {
				return err
			}
		}
	}
	if r.PidsLimit > 0 {
		if err := g.setPidsLimit(r.PidsLimit); err != nil {
			return err
		}
	}
	return nil
}

func period(r Resources) uint64 {
	if r.CPUPeriod == 0 {
		return 100000
	}
	return r.CPUPeriod
}

func (g *Group) v1(c string) (string, error) {
	d, ok := g.Paths[c]
	if !ok {
		return "", fmt.Errorf("cgroup v1 %s: %w", c, ErrControllerMissing)
	}
	return d, nil
}

func (g *Group) statsV1() (Stats, error) {
	var s Stats
	var errs []error
	if d, ok := g.Paths["cpuacct"]; ok {
		ns, err := readUint(d, "cpuacct.usage")
		errs = append(errs, err)
		s.CPUUsage = time.Duration(ns)
	}
	if d, ok := g.Paths["memory"]; ok {
		var err error
		s.MemoryBytes, err = readUint(d, "memory.usage_in_bytes")
		errs = append(errs, err)
		s.MemoryPeakBytes, err = readUint(d, "memory.max_usage_in_bytes")
		errs = append(errs, err)
		lim, err := readUint(d, "memory.limit_in_bytes")
		errs = append(errs, err)
		if lim < 1<<62 {
			s.MemoryLimitBytes = lim
		}
		oom, err := readKeyed(d, "memory.oom_control")
		errs = append(errs, err)
		s.OOMKills = oom["oom_kill"]
		s.MemoryInactiveFileBytes = readInactiveFile(d, V1)
	}
	if d, ok := g.Paths["blkio"]; ok {
		s.BlockReadBytes, s.BlockWriteBytes = blkioV1(d)
	}
	if d := g.pidsDir(); d != "" {
		var err error
		s.Pids, err = readUint(d, "pids.current")
		errs = append(errs, err)
		s.PidsLimit, _ = readUint(d, "pids.max")
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("cgroup v1 stats: %w", err)
	}
	return s, nil
}
