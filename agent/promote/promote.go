// Package promote runs the manager of a promoted node inside its agent,
// Swarm style: when a session says the node's desired role is manager, it
// gets a manager certificate for the node's own ID and runs a
// manager.Manager beside the agent; a demotion stops it. It is the one
// part of the agent that links the manager (internal/layout allows it).
package promote

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"berth/agent"
	"berth/ca"
	"berth/discovery"
	"berth/manager"
	"berth/manager/telemetry"
	pb "berth/proto/berth/v1"
)

// Issuer gets a promoted node its manager certificate: the agent.
type Issuer interface {
	ManagerCertificate(ctx context.Context) (*agent.ManagerIdentity, error)
}

// Config assembles a Part.
type Config struct {
	// Dir holds the manager's data: DATA_DIR/manager.
	Dir string
	// ListenAddr and AdvertiseAddr are the manager's (see Addrs).
	ListenAddr, AdvertiseAddr string
	// InsecureRegistries are the agent's, handed to the manager.
	InsecureRegistries []string
	// Issuer gets the manager certificate.
	Issuer Issuer
	// Gossip is the agent's gossip member, nil until it runs: the manager
	// watches it rather than gossip a second time as the same node.
	Gossip func() *discovery.Gossip
	// Metrics count what the manager does, on the agent's endpoint (nil:
	// --metrics-addr not given).
	Metrics *telemetry.Metrics
	Log     *slog.Logger
}

// Part is the manager part of a node's daemon: when a session says the
// node's desired role is manager, it gets a manager certificate for the
// node's own ID, writes it into Dir and runs a manager.Manager there,
// which joins Raft as a voter. A demotion (manager.ErrRemoved) stops that
// manager and removes Dir; the agent and its tasks run on throughout. A
// restarted agent whose data dir holds the manager identity runs the
// manager again at once.
type Part struct {
	cfg        Config
	log        *slog.Logger
	retryAfter time.Duration // first backoff; doubles up to 30 s
	// roles holds the latest desired role a session delivered.
	roles chan pb.NodeSpec_Role
}

// New returns a Part; Run runs it.
func New(cfg Config) *Part {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Part{cfg: cfg, log: cfg.Log.With("part", "manager"), retryAfter: time.Second, roles: make(chan pb.NodeSpec_Role, 1)}
}

// Want records the desired role a session delivered; the latest wins and
// it never blocks (agent.Config.OnDesiredRole).
func (p *Part) Want(role pb.NodeSpec_Role) {
	for {
		select {
		case p.roles <- role:
			return
		default:
		}
		select {
		case <-p.roles:
		default:
		}
	}
}

// hasIdentity says whether DIR/manager holds a manager identity.
func (p *Part) hasIdentity() bool {
	return ca.Dir(filepath.Join(p.cfg.Dir, "certs")).Exists()
}

// next says what Run does after a step.
type next int

const (
	stop  next = iota // ctx ended
	again             // step again at once
	fresh             // step again at once, the backoff back to its start
	later             // step again after the backoff, which then doubles
)

// Run runs the manager part until ctx ends: the node's manager while the
// data dir holds a manager identity, else it waits to be promoted.
func (p *Part) Run(ctx context.Context) error {
	wait := p.retryAfter
	for {
		step := p.awaitPromotion
		if p.hasIdentity() {
			step = p.manage
		}
		switch step(ctx, wait) {
		case stop:
			return nil
		case fresh:
			wait = p.retryAfter
		case later:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = min(2*wait, 30*time.Second)
		}
	}
}

// manage runs the manager until it ends: demoted, it removes the
// manager's data and the node stays a worker; failed, it is started again.
func (p *Part) manage(ctx context.Context, wait time.Duration) next {
	err := p.runManager(ctx)
	if ctx.Err() != nil {
		return stop
	}
	if errors.Is(err, manager.ErrRemoved) {
		p.log.Info("this node was demoted: its manager stopped, the agent runs on", "node_dir", p.cfg.Dir)
		if err := os.RemoveAll(p.cfg.Dir); err != nil {
			p.log.Error("remove the demoted manager's data", "dir", p.cfg.Dir, "err", err)
		}
		return fresh
	}
	p.log.Error("manager stopped; starting it again", "err", err, "retry_in", wait)
	return later
}

// awaitPromotion waits for a session to say the node is to be a manager,
// then gets it a manager identity.
func (p *Part) awaitPromotion(ctx context.Context, wait time.Duration) next {
	select {
	case <-ctx.Done():
		return stop
	case role := <-p.roles:
		if role != pb.NodeSpec_ROLE_MANAGER {
			return again
		}
	}
	err := p.adopt(ctx)
	switch {
	case err == nil:
		return fresh
	case ctx.Err() != nil:
		return stop
	case errors.Is(err, agent.ErrNotPromoted):
		// Stale news: the node was demoted again meanwhile; the next
		// session message says what is wanted now.
		p.log.Info("no longer promoted; staying a worker", "err", err)
		return again
	}
	p.log.Warn("cannot become a manager yet; retrying", "err", err, "retry_in", wait)
	// Still promoted as far as we know, unless news came since.
	select {
	case p.roles <- pb.NodeSpec_ROLE_MANAGER:
	default:
	}
	return later
}

// adopt gets a manager certificate and writes it into DIR/manager.
func (p *Part) adopt(ctx context.Context) error {
	id, err := p.cfg.Issuer.ManagerCertificate(ctx)
	if err != nil {
		return err
	}
	// A manager identity left half-written by a crash is replaced.
	if err := os.RemoveAll(p.cfg.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return err
	}
	err = manager.AdoptIdentity(p.cfg.Dir, manager.Adopted{
		RootPEM: id.RootPEM, CertPEM: id.CertPEM, KeyPEM: id.KeyPEM,
		ClusterKey: id.ClusterKey, Join: id.Managers,
	})
	if err != nil {
		return err
	}
	p.log.Info("promoted: starting a manager in this agent", "node", id.NodeID, "listen", p.cfg.ListenAddr, "join", id.Managers)
	return nil
}

// runManager runs the manager on DIR/manager until it ends.
func (p *Part) runManager(ctx context.Context) error {
	cfg := manager.Config{
		DataDir: p.cfg.Dir, ListenAddr: p.cfg.ListenAddr, AdvertiseAddr: p.cfg.AdvertiseAddr,
		InsecureRegistries: p.cfg.InsecureRegistries, SharedNode: true, SharedGossip: p.cfg.Gossip, Logger: p.log,
	}
	p.cfg.Metrics.Instrument(&cfg)
	m, err := manager.New(cfg)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	gctx, stop := context.WithCancel(gctx)
	g.Go(func() error { defer stop(); return m.Run(gctx) }) // whatever ends it ends the counting
	g.Go(func() error { return p.cfg.Metrics.Follow(gctx, m) })
	return g.Wait()
}

// Addrs derives the manager part's listen and advertise addresses from
// berth-agent's --manager-listen-addr and --advertise-addr: the listen
// address defaults to ADVERTISE_IP:4242, and an unspecified listen host
// is advertised as the node's advertise IP.
func Addrs(listen, advertiseIP string) (string, string, error) {
	if listen == "" {
		host := advertiseIP
		if host == "" {
			host = "0.0.0.0"
		}
		listen = net.JoinHostPort(host, DefaultManagerPort)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", err
	}
	if ip := net.ParseIP(host); advertiseIP != "" && (host == "" || ip != nil && ip.IsUnspecified()) {
		return listen, net.JoinHostPort(advertiseIP, port), nil
	}
	return listen, "", nil
}

// DefaultManagerPort is where a promoted node's manager listens unless
// --manager-listen-addr says otherwise.
const DefaultManagerPort = "4242"
