package etcdstore

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReadIndex is the index a linearizable read must wait for: the revision
// of etcd's last write under the prefix, read from etcd's quorum. A
// manager that has applied it has seen every write acknowledged before
// the call.
func (b *Backend) ReadIndex(ctx context.Context) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	resp, err := b.cfg.Client.Get(rctx, b.keys.batch)
	if err != nil {
		return 0, b.unreachable(err)
	}
	b.answered()
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return uint64(resp.Kvs[0].ModRevision), nil
}

// ObserveLeader calls fn with the value the elected leader campaigned
// with (RunWhileLeader's id), "" while none leads, each time it changes,
// until ctx ends. While etcd does not answer, the last value stands.
func (b *Backend) ObserveLeader(ctx context.Context, fn func(value string)) error {
	last := "\x00" // never a campaign value: the first answer is told
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 2*time.Second) {
		rev, err := b.leaderValue(ctx, func(v string) {
			if v != last {
				last = v
				fn(v)
			}
		})
		if err == nil {
			wait = 100 * time.Millisecond
			err = b.watchLeader(ctx, rev, func() error {
				_, err := b.leaderValue(ctx, func(v string) {
					if v != last {
						last = v
						fn(v)
					}
				})
				return err
			})
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Debug("etcd leader observation: starting over", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// leaderValue reads the election's leader (the oldest campaign key) and
// hands its value to tell; it returns the revision read at.
func (b *Backend) leaderValue(ctx context.Context, tell func(string)) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	resp, err := b.cfg.Client.Get(rctx, b.electionPrefix(), clientv3.WithFirstCreate()...)
	if err != nil {
		return 0, b.unreachable(err)
	}
	b.answered()
	v := ""
	if len(resp.Kvs) > 0 {
		v = string(resp.Kvs[0].Value)
	}
	tell(v)
	return resp.Header.Revision, nil
}

// watchLeader calls changed after each change of the campaign keys from
// revision rev on, until the watch breaks.
func (b *Backend) watchLeader(ctx context.Context, rev int64, changed func() error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range b.cfg.Client.Watch(wctx, b.electionPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			return err
		}
		if err := changed(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// electionPrefix is where the leader election's campaign keys live.
func (b *Backend) electionPrefix() string { return b.keys.prefix + "/leader/" }
