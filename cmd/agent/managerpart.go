package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"berth/agent"
	"berth/ca"
	"berth/discovery"
	"berth/manager"
	pb "berth/proto/berth/v1"
)

// certIssuer gets a promoted node its manager certificate (the agent).
type certIssuer interface {
	ManagerCertificate(ctx context.Context) (*agent.ManagerIdentity, error)
}

// managerPart runs the manager of a promoted node inside its agent, Swarm
// style: when a session says the node's desired role is manager, it gets
// a manager certificate for the node's own ID, writes it into DIR/manager
// and runs a manager.Manager there, which joins Raft as a voter. A demotion
// (manager.ErrRemoved) stops that manager and removes DIR/manager; the
// agent and its tasks run on throughout. A restarted agent whose data dir
// holds the manager identity runs the manager again at once.
type managerPart struct {
	dir        string // DATA_DIR/manager
	listen     string
	advertise  string
	insecure   []string
	log        *slog.Logger
	issuer     certIssuer
	retryAfter time.Duration // first backoff; doubles up to 30 s
	// roles holds the latest desired role a session delivered.
	roles chan pb.NodeSpec_Role
	// gossip is the agent's gossip member, nil until it runs.
	gossip func() *discovery.Gossip
}

func newManagerPart(dir, listen, advertise string, insecure []string, log *slog.Logger) *managerPart {
	return &managerPart{
		dir: dir, listen: listen, advertise: advertise, insecure: insecure,
		log: log.With("part", "manager"), retryAfter: time.Second,
		roles: make(chan pb.NodeSpec_Role, 1),
	}
}

// want records the desired role a session delivered; the latest wins and
// it never blocks (agent.Config.OnDesiredRole).
func (p *managerPart) want(role pb.NodeSpec_Role) {
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
func (p *managerPart) hasIdentity() bool {
	return ca.Dir(filepath.Join(p.dir, "certs")).Exists()
}

// run runs the manager part until ctx ends.
func (p *managerPart) run(ctx context.Context) error {
	wait := p.retryAfter
	for {
		if p.hasIdentity() {
			err := p.runManager(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, manager.ErrRemoved) {
				p.log.Info("this node was demoted: its manager stopped, the agent runs on", "node_dir", p.dir)
				if err := os.RemoveAll(p.dir); err != nil {
					p.log.Error("remove the demoted manager's data", "dir", p.dir, "err", err)
				}
				wait = p.retryAfter
				continue
			}
			p.log.Error("manager stopped; starting it again", "err", err, "retry_in", wait)
		} else {
			select {
			case <-ctx.Done():
				return nil
			case role := <-p.roles:
				if role != pb.NodeSpec_ROLE_MANAGER {
					continue
				}
			}
			err := p.adopt(ctx)
			if err == nil {
				wait = p.retryAfter
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, agent.ErrNotPromoted) {
				// Stale news: the node was demoted again meanwhile; the
				// next session message says what is wanted now.
				p.log.Info("no longer promoted; staying a worker", "err", err)
				continue
			}
			p.log.Warn("cannot become a manager yet; retrying", "err", err, "retry_in", wait)
			// Still promoted as far as we know, unless news came since.
			select {
			case p.roles <- pb.NodeSpec_ROLE_MANAGER:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// adopt gets a manager certificate and writes it into DIR/manager.
func (p *managerPart) adopt(ctx context.Context) error {
	id, err := p.issuer.ManagerCertificate(ctx)
	if err != nil {
		return err
	}
	// A manager identity left half-written by a crash is replaced.
	if err := os.RemoveAll(p.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	err = manager.AdoptIdentity(p.dir, manager.Adopted{
		RootPEM: id.RootPEM, CertPEM: id.CertPEM, KeyPEM: id.KeyPEM,
		ClusterKey: id.ClusterKey, Join: id.Managers,
	})
	if err != nil {
		return err
	}
	p.log.Info("promoted: starting a manager in this agent", "node", id.NodeID, "listen", p.listen, "join", id.Managers)
	return nil
}

// runManager runs the manager on DIR/manager until it ends.
func (p *managerPart) runManager(ctx context.Context) error {
	m, err := manager.New(manager.Config{
		DataDir: p.dir, ListenAddr: p.listen, AdvertiseAddr: p.advertise,
		InsecureRegistries: p.insecure, SharedNode: true, SharedGossip: p.gossip, Logger: p.log,
	})
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

// managerAddrs derives the manager part's listen and advertise addresses
// from --manager-listen-addr and --advertise-addr: the listen address
// defaults to ADVERTISE_IP:4242, and an unspecified listen host is
// advertised as the node's advertise IP.
func managerAddrs(listen, advertiseIP string) (string, string, error) {
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
