package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/e2ecluster"
	"berth/internal/testhost"
	pb "berth/proto/berth/v1"
)

// mountPrefix starts the source name of every tmpfs the suite mounts,
// followed by the test process's PID: sweepMounts removes those of dead
// processes.
const mountPrefix = "berthfaults-"

// sweepMounts unmounts the suite's tmpfs mounts left by test processes
// that died.
func sweepMounts() error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// mount point is field 4; the source follows the " - " separator.
		sep := indexOf(fields, "-")
		if sep < 0 || sep+2 >= len(fields) || !strings.HasPrefix(fields[sep+2], mountPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(fields[sep+2], mountPrefix))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its test still runs
		}
		if err := unix.Unmount(fields[4], unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", fields[4], err))
		}
	}
	return errors.Join(errs...)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// mountTmpfs mounts a tmpfs of size bytes at dir, named for this process.
func mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	src := mountPrefix + strconv.Itoa(os.Getpid())
	if err := unix.Mount(src, dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", dir, err)
	}
	return nil
}

// fillerName is the file that fills a data disk.
const fillerName = "faults-filler"

// fillDisk writes to a file in dir until the filesystem is full.
func fillDisk(dir string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, fillerName))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			// Small writes take the last partial pages too.
			for {
				if _, err := f.Write(buf[:512]); err != nil {
					return n, nil
				}
				n += 512
			}
		}
		if err != nil {
			return n, err
		}
	}
}

// freeDisk removes the filler.
func freeDisk(dir string) error { return os.Remove(filepath.Join(dir, fillerName)) }

// netFaults is the faults a run has injected into the network, so heal can undo
// all of them.
type netFaults struct {
	hosts *testhost.Cluster
	mu    sync.Mutex
	drops [][2]*testhost.Host
	lossy [][2]*testhost.Host
}

// dropFrom drops the traffic from every host in from to every host in to.
func (n *netFaults) dropFrom(ctx context.Context, from, to []*e2ecluster.Node) error {
	for _, a := range from {
		for _, b := range to {
			if err := n.hosts.DropFrom(ctx, a.Host, b.Host); err != nil {
				return err
			}
			n.mu.Lock()
			n.drops = append(n.drops, [2]*testhost.Host{a.Host, b.Host})
			n.mu.Unlock()
		}
	}
	return nil
}

// partition drops the traffic between a and b, both ways.
func (n *netFaults) partition(ctx context.Context, a, b []*e2ecluster.Node) error {
	if err := n.dropFrom(ctx, a, b); err != nil {
		return err
	}
	return n.dropFrom(ctx, b, a)
}

// flap makes every link between the nodes lose testhost.LossPercent of
// its packets.
func (n *netFaults) flap(ctx context.Context, nodes []*e2ecluster.Node) error {
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if err := n.hosts.Lossy(ctx, a.Host, b.Host); err != nil {
				return err
			}
			n.mu.Lock()
			n.lossy = append(n.lossy, [2]*testhost.Host{a.Host, b.Host})
			n.mu.Unlock()
		}
	}
	return nil
}

// heal undoes every network fault.
func (n *netFaults) heal(ctx context.Context) error {
	n.mu.Lock()
	drops, lossy := n.drops, n.lossy
	n.drops, n.lossy = nil, nil
	n.mu.Unlock()
	var errs []error
	for _, d := range drops {
		errs = append(errs, n.hosts.AllowFrom(ctx, d[0], d[1]))
	}
	for _, l := range lossy {
		errs = append(errs, n.hosts.Lossless(ctx, l[0], l[1]))
	}
	return errors.Join(errs...)
}

// leader asks the managers in turn which one leads, and returns it.
func (r *run) leader(ctx context.Context) (*e2ecluster.Node, error) {
	var last error
	for i := range r.c.Managers {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := r.w.control(i).ListNodes(cctx, &pb.ListNodesRequest{})
		cancel()
		if err != nil {
			last = err
			continue
		}
		for _, nd := range resp.GetNodes() {
			if !nd.GetManagerStatus().GetLeader() {
				continue
			}
			for _, m := range r.c.Managers {
				if m.Addr() == nd.GetManagerStatus().GetAddr() {
					return m, nil
				}
			}
		}
		last = errors.New("no manager is marked leader")
	}
	return nil, fmt.Errorf("find the leader: %w", last)
}

// others returns the nodes of all that are not in but.
func others(all []*e2ecluster.Node, but ...*e2ecluster.Node) []*e2ecluster.Node {
	var out []*e2ecluster.Node
	for _, n := range all {
		keep := true
		for _, b := range but {
			keep = keep && n != b
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}
