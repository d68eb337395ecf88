package testhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"
)

// MaxHosts is the most hosts one cluster can hold: host i gets address .(10+i)
// of the cluster's /24.
const MaxHosts = 200

// closeTimeout bounds the commands Close runs.
const closeTimeout = 30 * time.Second

// Options configures Create.
type Options struct {
	// N is the number of hosts, 1 to MaxHosts.
	N int
	// Logger receives debug logs of what is created and removed; nil
	// discards them.
	Logger *slog.Logger
}

// Cluster is a set of hosts on one bridge. Its methods are safe for
// concurrent use; Close must be called once, after which nothing else may be.
type Cluster struct {
	// ID is the run id; every object of the cluster is named Prefix+ID....
	ID string
	// Bridge is the name of the bridge in the root namespace.
	Bridge string
	// Subnet is the cluster's /24 inside 198.18.0.0/15.
	Subnet netip.Prefix
	// Gateway is the bridge's own address, .1 of Subnet, reachable from
	// every host.
	Gateway netip.Addr
	// Hosts are the hosts, Hosts[i] named "h<i+1>".
	Hosts []*Host

	log     *slog.Logger
	table   string // bridge-family nft table for faults
	nsenter string
	fork    *forker // starts the hosts' processes

	mu    sync.Mutex
	drops map[[2]netip.Addr]bool // directions dropped, from . to
	lossy map[[2]netip.Addr]bool // directions losing LossPercent of packets
}

// TB is the part of testing.TB that NewT uses.
type TB interface {
	Helper()
	Context() context.Context
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// NewT creates a cluster of n hosts for a test and closes it when the test
// ends. It fails the test if the cluster cannot be made or removed.
func NewT(t TB, n int) *Cluster {
	t.Helper()
	c, err := Create(t.Context(), Options{N: n, Logger: slog.New(tbHandler{t: t})})
	if err != nil {
		t.Fatalf("testhost: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Fatalf("testhost: %v", err)
		}
	})
	return c
}

// Create sweeps the leftovers of dead runs, then makes a cluster of
// opts.N hosts. It needs root. On error it removes whatever it had made.
func Create(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.N < 1 || opts.N > MaxHosts {
		return nil, fmt.Errorf("create cluster: N is %d, want 1 to %d", opts.N, MaxHosts)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("create cluster: %w", err)
	}
	unlock, err := lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("create cluster: %w", err)
	}
	defer unlock()
	// Names are unique per run, so a leftover that will not go away is a
	// nuisance to report, not a reason to fail the caller's test.
	if err := sweepLocked(ctx, log); err != nil {
		log.Warn("testhost sweep of dead runs failed", "err", err)
	}
	c, err := claim(log)
	if err != nil {
		return nil, fmt.Errorf("create cluster: %w", err)
	}
	c.nsenter = nsenter
	if err := c.build(ctx, opts.N); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("create cluster %s: %w", c.ID, err)
	}
	log.Debug("testhost cluster ready", "run", c.ID, "subnet", c.Subnet, "hosts", opts.N)
	return c, nil
}

// claim picks an unused run id and subnet and records this process as the
// run's owner. The caller holds the lock.
func claim(log *slog.Logger) (*Cluster, error) {
	live, _, err := liveRuns()
	if err != nil {
		return nil, err
	}
	used, err := usedNames()
	if err != nil {
		return nil, err
	}
	var id string
	for tries := 0; id == "" || live[id] || used[id]; tries++ {
		if tries == 100 {
			return nil, errors.New("no free run id")
		}
		if id, err = newRunID(); err != nil {
			return nil, err
		}
	}
	subnet, err := pickSubnet(id)
	if err != nil {
		return nil, err
	}
	me, err := self()
	if err != nil {
		return nil, err
	}
	if err := writeOwner(id, me); err != nil {
		return nil, err
	}
	tag := Prefix + id
	return &Cluster{
		ID:      id,
		Bridge:  tag + "br",
		Subnet:  subnet,
		Gateway: subnet.Addr().Next(),
		log:     log.With("run", id),
		table:   tag,
		drops:   map[[2]netip.Addr]bool{},
		lossy:   map[[2]netip.Addr]bool{},
		fork:    newForker(),
	}, nil
}

// build makes the bridge, the hosts and the nft table.
func (c *Cluster) build(ctx context.Context, n int) error {
	if err := shareNetnsDir(); err != nil {
		return err
	}
	br, err := makeBridge(c.Bridge, netip.PrefixFrom(c.Gateway, c.Subnet.Bits()))
	if err != nil {
		return err
	}
	if err := allowBridged(ctx, c.tag(), c.Bridge); err != nil {
		return err
	}
	if _, err := nft(ctx, faultRules(c.table, c.tag()+"h"), "-f", "-"); err != nil {
		return fmt.Errorf("fault table: %w", err)
	}
	base := c.Subnet.Addr().As4()
	for i := 1; i <= n; i++ {
		addr := base
		addr[3] = byte(10 + i)
		h := &Host{
			Index:   i,
			Name:    fmt.Sprintf("h%d", i),
			Addr:    netip.AddrFrom4(addr),
			Netns:   fmt.Sprintf("%s-h%d", c.tag(), i),
			Link:    fmt.Sprintf("%sh%d", c.tag(), i),
			cluster: c,
			procs:   map[*Proc]bool{},
		}
		// Appended first, so Close removes a half-made host too.
		c.Hosts = append(c.Hosts, h)
		if err := h.build(br, c.Subnet.Bits()); err != nil {
			return err
		}
		c.log.Debug("testhost host ready", "host", h.Name, "addr", h.Addr, "netns", h.Netns)
	}
	return nil
}

func (c *Cluster) tag() string { return Prefix + c.ID }

// Close kills the processes started in the hosts and removes every object
// of the cluster, then the record of its run. It returns all errors met;
// a Sweep after a failed Close removes what is left.
func (c *Cluster) Close() error {
	// Close has no caller context (it runs in test cleanups, after the
	// test's context ended); the bound keeps a stuck nft from hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	for _, h := range c.Hosts {
		errs = append(errs, h.close())
	}
	c.fork.close() // the hosts' processes are gone: their Pdeathsig is moot
	errs = append(errs, removeAllowed(ctx, func(comment string) bool { return comment == c.tag() }))
	errs = append(errs, deleteTables(ctx, func(name string) bool { return name == c.table }))
	errs = append(errs, deleteLinks(func(name string) bool { return runOf(name) == c.ID }))
	if err := os.Remove(pidFile(c.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close cluster %s: %w", c.ID, err)
	}
	c.log.Debug("testhost cluster removed")
	return nil
}

// owns checks that a and b are two distinct hosts of c.
func (c *Cluster) owns(a, b *Host) error {
	if a.cluster != c || b.cluster != c {
		return fmt.Errorf("hosts %s and %s are not both in cluster %s", a.Name, b.Name, c.ID)
	}
	if a == b {
		return fmt.Errorf("host %s with itself", a.Name)
	}
	return nil
}
