package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"berth/agent"
	"berth/discovery"
)

// DefaultGossipPort is the port agents gossip on (TCP and UDP), as 7946 is
// Swarm's.
const DefaultGossipPort = 7946

// runDaemon runs the node daemon until ctx ends: the agent, once a
// session hands it the cluster's key a gossip member, and once the node is
// promoted a manager (managerPart).
func runDaemon(ctx context.Context, o *options, log *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	listen, advertise, err := managerAddrs(o.managerListen, o.advertiseAddr)
	if err != nil {
		return fmt.Errorf("--manager-listen-addr: %w", err)
	}
	part := newManagerPart(filepath.Join(dataDir, "manager"), listen, advertise, o.insecureRegs, log)
	labels := map[string]string{}
	for _, l := range o.labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	maxSize, maxEntries, err := o.layers.config()
	if err != nil {
		return err
	}
	g := &gossipJoiner{log: log, bind: o.advertiseAddr, port: o.gossipPort}
	defer g.shutdown()
	a, err := agent.New(agent.Config{
		DataDir: dataDir, Join: o.join, Token: o.token, AdvertiseAddr: o.advertiseAddr, Overlay: o.overlay, ResolvConf: o.resolvConf,
		Hostname: o.hostname, Labels: labels, InsecureRegistries: o.insecureRegs, Logger: log,
		MaxLayerSize: maxSize, MaxLayerEntries: maxEntries,
		OnGossip:      func(key []byte, accept [][]byte, peers []string) { g.update(ctx, key, accept, peers) },
		OnDesiredRole: part.want,
	})
	if err != nil {
		return err
	}
	g.nodeID = a.NodeID
	part.issuer = a
	part.gossip = g.member
	eg, ectx := errgroup.WithContext(ctx)
	ectx, cancel := context.WithCancel(ectx)
	eg.Go(func() error { defer cancel(); return a.Run(ectx) })
	eg.Go(func() error { return part.run(ectx) })
	err = eg.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// gossipJoiner starts this node's gossip member on the first key a session
// delivers, follows the keys as they rotate, and joins the peers each
// later message names.
type gossipJoiner struct {
	log    *slog.Logger
	bind   string
	port   int
	nodeID func() string

	mu     sync.Mutex
	g      *discovery.Gossip
	joined map[string]bool
}

func (j *gossipJoiner) update(ctx context.Context, key []byte, accept [][]byte, peers []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(key) == 0 {
		return
	}
	if j.g != nil {
		// A rotation step: the member changes keys in place, never leaving.
		if err := j.g.SetKeys(key, accept); err != nil {
			j.log.Error("set the gossip keys a session delivered", "err", err)
		}
	}
	if j.g == nil {
		bind := j.bind
		if bind == "" {
			bind = "0.0.0.0"
		}
		g, err := discovery.NewGossip(discovery.GossipConfig{
			NodeID: j.nodeID(), BindAddr: bind, BindPort: j.port, Key: key, AcceptKeys: accept,
			Role: "worker", Logger: j.log.With("part", "gossip"),
		})
		if err == nil {
			err = g.Start(ctx)
		}
		if err != nil {
			j.log.Warn("gossip not started; failure detection falls back to heartbeats", "err", err)
			return
		}
		j.g, j.joined = g, map[string]bool{}
	}
	var fresh []string
	for _, p := range peers {
		if _, _, err := net.SplitHostPort(p); err == nil && !j.joined[p] {
			fresh = append(fresh, p)
		}
	}
	if len(fresh) == 0 {
		return
	}
	if n, err := j.g.Join(ctx, fresh); err != nil && n == 0 {
		j.log.Warn("gossip join failed", "peers", fresh, "err", err)
		return
	}
	for _, p := range fresh {
		j.joined[p] = true
	}
}

// member is the node's gossip member, nil until a session started it.
func (j *gossipJoiner) member() *discovery.Gossip {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.g
}

func (j *gossipJoiner) shutdown() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.g != nil {
		j.g.Shutdown()
	}
}
