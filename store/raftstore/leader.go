package raftstore

import (
	"context"
	"fmt"
	"time"

	"berth/store/leadership"
)

// LeaderChanges sends whether this node leads: now, and after every change
// (latest value wins; repeats are possible). The channel closes when ctx
// ends or the node shuts down.
func (n *Node) LeaderChanges(ctx context.Context) <-chan bool {
	out := make(chan bool, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(out)
		resync := time.NewTicker(time.Second) // observations can be dropped
		defer resync.Stop()
		for {
			changed := n.leaderChanged()
			v := n.IsLeader()
			select {
			case <-out:
			default:
			}
			out <- v
			select {
			case <-changed:
			case <-resync.C:
			case <-ctx.Done():
				return
			case <-n.stop:
				return
			}
		}
	}()
	return out
}

// RunWhileLeader runs fn for as long as this node leads, with a context
// that ends when leadership is lost; see package leadership. Before fn
// starts, a Barrier makes sure the store holds every committed entry, so
// leader loops start from the whole state. It returns when ctx ends or the
// node shuts down, after fn has returned.
func (n *Node) RunWhileLeader(ctx context.Context, fn func(leaderCtx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return leadership.Run(ctx, n.LeaderChanges(ctx), func(lctx context.Context) error {
		if _, err := n.Barrier(lctx); err != nil {
			return fmt.Errorf("leader barrier: %w", err)
		}
		return fn(lctx)
	}, leadership.Options{Logger: n.log, Backoff: n.cfg.ElectionTimeout})
}
