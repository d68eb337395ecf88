package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"berth/store"
)

// Node is one Raft member holding a replicated store.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	store *store.MemoryStore
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	snaps *snapPolicy

	obsCh    chan raft.Observation
	observer *raft.Observer
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	downErr  error

	// readyTerm is the last term in which this node, leading, made sure it
	// had applied everything committed before the term (caughtUp).
	readyTerm atomic.Uint64

	mu          sync.Mutex
	changed     chan struct{}   // closed and replaced when leadership changes
	unreachable map[string]bool // peers whose heartbeats fail (leader only)
}

// Open opens (or creates) the node's data in cfg.DataDir and starts Raft.
// With no state and Bootstrap it starts a new cluster; with no state and no
// Bootstrap it waits to be added by a leader (AddVoter there).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open raft node %s: %w", cfg.NodeID, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft node: %w", err)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID),
		stop: make(chan struct{}), changed: make(chan struct{}), unreachable: map[string]bool{},
	}
	n.store = store.New(n, append([]store.Option{store.WithClock(cfg.Clock), store.WithLogger(cfg.Logger)}, cfg.StoreOptions...)...)
	if err := n.start(); err != nil {
		n.closeFiles()
		return nil, fmt.Errorf("open raft node %s in %s: %w", cfg.NodeID, cfg.DataDir, err)
	}
	return n, nil
}

func (n *Node) start() error {
	var err error
	n.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open log store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, n.cfg.SnapshotRetain, newHCLog(n.log, "raft-snapshots"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: n.cfg.StreamLayer, MaxPool: 4, Timeout: 2 * time.Second,
		Logger: newHCLog(n.log, "raft-net"),
	})
	rc := n.cfg.raftConfig()
	has, err := raft.HasExistingState(n.bolt, n.bolt, snaps)
	if err != nil {
		return fmt.Errorf("check existing state: %w", err)
	}
	if err := n.prepare(rc, has, snaps); err != nil {
		return err
	}
	n.obsCh = make(chan raft.Observation, 64)
	n.observer = raft.NewObserver(n.obsCh, false, nil)
	n.snaps = newSnapPolicy(n.cfg.SnapshotMinBytes)
	n.snaps.persisted(lastSnapshotBytes(snaps))
	n.raft, err = raft.NewRaft(rc, &fsm{store: n.store, log: n.log, policy: n.snaps}, n.bolt, n.bolt, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft.RegisterObserver(n.observer)
	n.wg.Add(2)
	go n.observe()
	go n.snapshotter()
	n.log.Info("raft node started", "addr", n.cfg.Addr, "existing_state", has, "bootstrap", n.cfg.Bootstrap && !has, "force_new_cluster", n.cfg.ForceNewCluster)
	return nil
}

// prepare bootstraps a new cluster or rewrites the membership for
// ForceNewCluster, before Raft starts.
func (n *Node) prepare(rc *raft.Config, has bool, snaps raft.SnapshotStore) error {
	self := raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.cfg.Addr)}
	switch {
	case n.cfg.ForceNewCluster && !has:
		return errors.New("force new cluster: the data dir holds no state to recover")
	case n.cfg.ForceNewCluster:
		// Replay into a throwaway store; RecoverCluster snapshots it and
		// the real store restores that snapshot when Raft starts.
		scratch := &fsm{store: store.New(nil), log: n.log}
		conf := raft.Configuration{Servers: []raft.Server{self}}
		if err := raft.RecoverCluster(rc, scratch, n.bolt, n.bolt, snaps, n.trans, conf); err != nil {
			return fmt.Errorf("force new cluster: %w", err)
		}
		n.log.Warn("forced a new one-manager cluster from the local state", "addr", n.cfg.Addr)
	case !has && n.cfg.Bootstrap:
		conf := raft.Configuration{Servers: []raft.Server{self}}
		if len(n.cfg.Peers) > 0 {
			conf.Servers = nil
			for _, p := range n.cfg.Peers {
				conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
		}
		if err := raft.BootstrapCluster(rc, n.bolt, n.bolt, snaps, n.trans, conf); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	return nil
}

// observe follows raft's observations: leadership changes and, on the
// leader, which peers stop answering heartbeats.
func (n *Node) observe() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.obsCh:
			n.mu.Lock()
			switch d := o.Data.(type) {
			case raft.LeaderObservation, raft.RaftState:
				if lo, ok := d.(raft.LeaderObservation); ok && n.cfg.OnLeaderChange != nil {
					n.cfg.OnLeaderChange(string(lo.LeaderID))
				}
				clear(n.unreachable)
				close(n.changed)
				n.changed = make(chan struct{})
			case raft.FailedHeartbeatObservation:
				n.unreachable[string(d.PeerID)] = true
			case raft.ResumedHeartbeatObservation:
				delete(n.unreachable, string(d.PeerID))
			}
			n.mu.Unlock()
		}
	}
}

// leaderChanged returns a channel closed at the next leadership change.
func (n *Node) leaderChanged() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// Store returns the replicated store. Writes through it commit on the
// leader; reads are local (see the package doc for consistent reads).
func (n *Node) Store() *store.MemoryStore { return n.store }

// ID returns this node's Raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node is the Raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// AppliedIndex returns the index of the last log entry applied to the store.
func (n *Node) AppliedIndex() uint64 { return n.store.Index() }

// Shutdown stops Raft without leaving the cluster (as a crash would, but
// cleanly on disk) and closes the files and the stream layer. Safe to call
// more than once.
func (n *Node) Shutdown() error {
	n.once.Do(func() {
		var errs []error
		if n.raft != nil {
			n.raft.DeregisterObserver(n.observer)
			errs = append(errs, n.raft.Shutdown().Error())
		}
		close(n.stop)
		n.wg.Wait()
		errs = append(errs, n.closeFiles())
		if err := errors.Join(errs...); err != nil {
			n.downErr = fmt.Errorf("shut down raft node %s: %w", n.cfg.NodeID, err)
		}
	})
	return n.downErr
}

func (n *Node) closeFiles() error {
	var errs []error
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	} else if n.cfg.StreamLayer != nil {
		errs = append(errs, n.cfg.StreamLayer.Close())
	}
	if n.bolt != nil {
		errs = append(errs, n.bolt.Close())
	}
	return errors.Join(errs...)
}
