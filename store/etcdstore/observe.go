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
	return b.observe(ctx, b.electionPrefix(), clientv3.WithFirstCreate(), func(resp *clientv3.GetResponse) string {
		if len(resp.Kvs) == 0 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}, fn)
}

// observe reads the keys under prefix (with opts) each time one of them
// changes, and calls tell with what value makes of them when it differs
// from the last, until ctx ends.
func (b *Backend) observe(ctx context.Context, prefix string, opts []clientv3.OpOption, value func(*clientv3.GetResponse) string, tell func(string)) error {
	last, told := "", false
	read := func() (int64, error) {
		rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
		resp, err := b.cfg.Client.Get(rctx, prefix, opts...)
		if err != nil {
			return 0, b.unreachable(err)
		}
		b.answered()
		if v := value(resp); !told || v != last {
			last, told = v, true
			tell(v)
		}
		return resp.Header.Revision, nil
	}
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 2*time.Second) {
		rev, err := read()
		if err == nil {
			wait = 100 * time.Millisecond
			err = b.watchPrefix(ctx, prefix, rev, func() error { _, err := read(); return err })
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Debug("etcd observation: starting over", "prefix", prefix, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// watchPrefix calls changed after each change under prefix from
// revision rev on, until the watch breaks.
func (b *Backend) watchPrefix(ctx context.Context, prefix string, rev int64, changed func() error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range b.cfg.Client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
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
