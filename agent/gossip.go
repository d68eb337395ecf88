package agent

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"berth/discovery"
)

// DefaultGossipPort is the port agents gossip on (TCP and UDP), as 7946 is
// Swarm's.
const DefaultGossipPort = 7946

// GossipConfig places a node's gossip member.
type GossipConfig struct {
	// BindAddr is the IP to gossip on; all addresses when empty.
	BindAddr string
	// Port is the gossip port (TCP and UDP).
	Port int
	// NodeID is the node's ID, known once the agent has its identity
	// (Agent.NodeID): the member starts after the first session.
	NodeID func() string
	Log    *slog.Logger
}

// Gossip is a node's gossip member (failure detection): it starts on the
// first key a session delivers, follows the keys as they rotate, and
// joins the peers each later message names. Update is what
// Config.OnGossip calls.
type Gossip struct {
	cfg GossipConfig

	mu     sync.Mutex
	g      *discovery.Gossip
	joined map[string]bool
}

// NewGossip returns a node's gossip member, not started yet.
func NewGossip(cfg GossipConfig) *Gossip {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Gossip{cfg: cfg}
}

// Update takes the keys and peers a session message delivered.
func (j *Gossip) Update(ctx context.Context, key []byte, accept [][]byte, peers []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(key) == 0 {
		return
	}
	if j.g != nil {
		// A rotation step: the member changes keys in place, never leaving.
		if err := j.g.SetKeys(key, accept); err != nil {
			j.cfg.Log.Error("set the gossip keys a session delivered", "err", err)
		}
	} else if !j.start(ctx, key, accept) {
		return
	}
	j.join(ctx, peers)
}

// start starts the member with the first keys; callers hold mu.
func (j *Gossip) start(ctx context.Context, key []byte, accept [][]byte) bool {
	bind := j.cfg.BindAddr
	if bind == "" {
		bind = "0.0.0.0"
	}
	g, err := discovery.NewGossip(discovery.GossipConfig{
		NodeID: j.cfg.NodeID(), BindAddr: bind, BindPort: j.cfg.Port, Key: key, AcceptKeys: accept,
		Role: "worker", Logger: j.cfg.Log.With("part", "gossip"),
	})
	if err == nil {
		err = g.Start(ctx)
	}
	if err != nil {
		j.cfg.Log.Warn("gossip not started; failure detection falls back to heartbeats", "err", err)
		return false
	}
	j.g, j.joined = g, map[string]bool{}
	return true
}

// join joins the peers not joined yet; callers hold mu.
func (j *Gossip) join(ctx context.Context, peers []string) {
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
		j.cfg.Log.Warn("gossip join failed", "peers", fresh, "err", err)
		return
	}
	for _, p := range fresh {
		j.joined[p] = true
	}
}

// Member is the node's gossip member, nil until a session started it.
func (j *Gossip) Member() *discovery.Gossip {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.g
}

// Shutdown leaves gossip.
func (j *Gossip) Shutdown() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.g != nil {
		j.g.Shutdown()
	}
}
