package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/sync/errgroup"

	"berth/store/leadership"
)

// DefaultLeaseTTL is the life of a leader's lease unless renewed.
const DefaultLeaseTTL = 10 * time.Second

// errLeaseAging ends a term whose lease was not renewed in time.
var errLeaseAging = errors.New("lease not renewed in time")

// RunWhileLeader runs fn while this manager (id) leads the managers that
// share the prefix, as raftstore.Node.RunWhileLeader does for Raft; id is
// the election's value while it leads (ObserveLeader reads it). The
// leader is elected with etcd's concurrency.Election on a lease of
// LeaseTTL, renewed every third of it. This manager stops leading — fn's
// context ends — once two thirds of the TTL have passed since the last
// renewal it saw: before the lease can expire and another manager be
// elected, as long as a renewal takes less than the remaining third. A
// deposed leader's last writes are still safe: every write is guarded by
// the state it was checked against. It returns when ctx ends, after fn
// has returned.
func (b *Backend) RunWhileLeader(ctx context.Context, id string, fn func(leaderCtx context.Context) error) error {
	changes := make(chan bool, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(changes)
		b.campaign(gctx, id, changes)
		return nil
	})
	g.Go(func() error {
		return leadership.Run(gctx, changes, fn, leadership.Options{Logger: b.log, Backoff: time.Second})
	})
	return g.Wait()
}

// tell hands leadership.Run the latest news, replacing older news.
func tell(changes chan bool, leads bool) {
	for {
		select {
		case changes <- leads:
			return
		default:
		}
		select {
		case <-changes:
		default:
		}
	}
}

// campaign stands for election, term after term, until ctx ends.
func (b *Backend) campaign(ctx context.Context, id string, changes chan bool) {
	for ctx.Err() == nil {
		err := b.term(ctx, id, changes)
		tell(changes, false)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("etcd leader election: standing again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(b.cfg.LeaseTTL / 10):
		}
	}
}

// term takes a lease, campaigns on it, and leads until the lease ages or
// is lost; it then resigns and revokes the lease, so that another manager
// is elected at once rather than after the TTL.
func (b *Backend) term(ctx context.Context, id string, changes chan bool) error {
	lease, err := b.grant(ctx)
	if err != nil {
		return err
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	defer b.revoke(ctx, lease)
	ka, err := b.cfg.Client.KeepAlive(kctx, lease)
	if err != nil {
		return b.unreachable(err)
	}
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		defer stop() // the lease is gone (expired, revoked) or ctx ended
		for range ka {
			b.renewed.Store(time.Now().UnixNano())
		}
	}()
	defer func() { stop(); <-followed }()
	sess, err := concurrency.NewSession(b.cfg.Client, concurrency.WithLease(lease), concurrency.WithContext(kctx))
	if err != nil {
		return b.unreachable(err)
	}
	el := concurrency.NewElection(sess, b.keys.prefix+"/leader")
	if err := el.Campaign(kctx, id); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	b.log.Info("elected leader through etcd", "node", id, "lease", fmt.Sprintf("%x", lease))
	tell(changes, true)
	err = b.lead(kctx)
	tell(changes, false)
	b.log.Info("stopped leading", "node", id, "why", err)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RequestTimeout)
	defer cancel()
	el.Resign(rctx)
	return err
}

// grant takes a lease, noting when (a grant counts as a renewal: the
// lease lives at most a TTL from its request).
func (b *Backend) grant(ctx context.Context) (clientv3.LeaseID, error) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	asked := time.Now()
	resp, err := b.cfg.Client.Grant(rctx, int64(b.cfg.LeaseTTL/time.Second))
	if err != nil {
		return 0, b.unreachable(err)
	}
	b.renewed.Store(asked.UnixNano())
	return resp.ID, nil
}

// revoke gives the lease up, so the next leader need not wait for it.
func (b *Backend) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RequestTimeout)
	defer cancel()
	if _, err := b.cfg.Client.Revoke(rctx, lease); err != nil {
		b.log.Debug("revoke the leader's lease (it expires on its own)", "err", err)
	}
}

// lead waits while the lease is fresh: it returns when ctx ends (the
// lease is gone, or the manager stops) or when two thirds of the TTL
// passed since the last renewal.
func (b *Backend) lead(ctx context.Context) error {
	limit := b.cfg.LeaseTTL * 2 / 3
	for {
		last := time.Unix(0, b.renewed.Load())
		wait := time.Until(last.Add(limit))
		if wait <= 0 {
			return fmt.Errorf("%w: last renewed %s ago, TTL %s", errLeaseAging, time.Since(last).Round(time.Millisecond), b.cfg.LeaseTTL)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
	}
}
