package testhost

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// hostIf is the name of each host's interface inside its namespace.
const hostIf = "eth0"

// Host is one network namespace on the cluster's bridge.
type Host struct {
	// Index is the host's number, from 1.
	Index int
	// Name is "h<Index>".
	Name string
	// Addr is the host's address on the bridge.
	Addr netip.Addr
	// Netns is the name of the namespace, as `ip netns list` shows it.
	Netns string
	// Link is the root-namespace end of the host's veth, the port on the
	// bridge that CutLink sets down.
	Link string

	cluster *Cluster
	mu      sync.Mutex
	procs   map[*Proc]bool
}

// NetnsPath is the namespace's bind mount, for nsenter --net= or setns.
func (h *Host) NetnsPath() string { return netnsDir + "/" + h.Netns }

// build creates the namespace and the veth pair, and configures the inside:
// lo up, eth0 with the host's address, no default route.
func (h *Host) build(br netlink.Link, bits int) error {
	path, err := createNetns(h.Netns)
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", h.Netns, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.Link, MasterIndex: br.Attrs().Index},
		PeerName:      hostIf,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", h.Link, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("up veth %s: %w", h.Link, err)
	}
	return h.configureInside(ns, bits)
}

func (h *Host) configureInside(ns netns.NsHandle, bits int) error {
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", h.Netns, err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", h.Netns, err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("up lo in %s: %w", h.Netns, err)
	}
	eth, err := nh.LinkByName(hostIf)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", hostIf, h.Netns, err)
	}
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(h.Addr, bits))}
	if err := nh.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s in %s: %w", hostIf, h.Netns, err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("up %s in %s: %w", hostIf, h.Netns, err)
	}
	return nil
}

// Command returns a command that runs name with args inside the host's
// network namespace only: mounts, PIDs and cgroups stay the caller's (unlike
// `ip netns exec`, which remounts /sys). It wraps the program in nsenter,
// which execs it, so the command's PID is the program's.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--net=" + h.NetnsPath(), "--", name}, args...)
	return exec.CommandContext(ctx, h.cluster.nsenter, argv...)
}

// Start starts cmd (made by Command) in a process group of its own, tracks it
// so Close kills it, and reaps it when it exits. The child gets SIGKILL if
// the calling process dies (it is forked from the cluster's own thread, see
// forker). Use the returned Proc, not cmd, to wait.
func (h *Host) Start(cmd *exec.Cmd) (*Proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := h.cluster.fork.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", cmd.Path, h.Name, err)
	}
	p := &Proc{Cmd: cmd, host: h, done: make(chan struct{})}
	h.mu.Lock()
	h.procs[p] = true
	h.mu.Unlock()
	go p.reap()
	return p, nil
}

// Kill9 sends SIGKILL to p's process group and waits until p has exited.
// Killing a process that already exited is not an error.
func (h *Host) Kill9(p *Proc) error {
	err := syscall.Kill(-p.PID(), syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -9 pid %d on %s: %w", p.PID(), h.Name, err)
	}
	<-p.done
	return nil
}

// CutLink sets the host's bridge port down: the host keeps its address but
// no frame reaches or leaves it until RestoreLink.
func (h *Host) CutLink() error {
	l, err := netlink.LinkByName(h.Link)
	if err != nil {
		return fmt.Errorf("cut link of %s: %w", h.Name, err)
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("cut link of %s: %w", h.Name, err)
	}
	return nil
}

// RestoreLink sets the host's bridge port up again after CutLink.
func (h *Host) RestoreLink() error {
	l, err := netlink.LinkByName(h.Link)
	if err != nil {
		return fmt.Errorf("restore link of %s: %w", h.Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("restore link of %s: %w", h.Name, err)
	}
	return nil
}

// close kills the host's tracked processes and anything else left in its
// namespace, then removes the namespace.
func (h *Host) close() error {
	h.mu.Lock()
	procs := make([]*Proc, 0, len(h.procs))
	for p := range h.procs {
		procs = append(procs, p)
	}
	h.mu.Unlock()
	var errs []error
	for _, p := range procs {
		errs = append(errs, h.Kill9(p))
	}
	errs = append(errs, deleteNetns(h.Netns))
	return errors.Join(errs...)
}

// Proc is a process started by Host.Start.
type Proc struct {
	// Cmd is the command; do not call its Wait.
	Cmd *exec.Cmd

	host *Host
	done chan struct{}
	err  error
}

// PID is the process's id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit or ctx to end, and returns the
// process's exit error (nil if it exited 0).
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("wait for pid %d: %w", p.PID(), ctx.Err())
	}
}

func (p *Proc) reap() {
	p.err = p.Cmd.Wait()
	p.host.mu.Lock()
	delete(p.host.procs, p)
	p.host.mu.Unlock()
	close(p.done)
}

// Exited reports whether the process has exited, and its state if so.
func (p *Proc) Exited() (*os.ProcessState, bool) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState, true
	default:
		return nil, false
	}
}
