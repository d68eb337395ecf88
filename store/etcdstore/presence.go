package etcdstore

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// presencePrefix is where each running manager keeps a key on a lease of
// its own: the managers that answer are those whose key is there.
func (b *Backend) presencePrefix() string { return b.keys.prefix + "/present/" }

// KeepPresent keeps this manager's key (id) under the presence prefix on
// a lease of LeaseTTL until ctx ends, putting it back whenever the lease
// is lost (etcd was away longer than the TTL); it revokes the lease at
// the end, so a stopped manager is absent at once and a killed one
// within the TTL.
func (b *Backend) KeepPresent(ctx context.Context, id string) error {
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 2*time.Second) {
		if b.present(ctx, id) {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// present holds one lease until it is lost or ctx ends; it reports
// whether the key was put.
func (b *Backend) present(ctx context.Context, id string) bool {
	// Not b.grant: that one times the leader's lease.
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	g, err := b.cfg.Client.Grant(rctx, int64(b.cfg.LeaseTTL/time.Second))
	if err != nil {
		b.unreachable(err)
		return false
	}
	defer b.revoke(ctx, g.ID)
	if _, err = b.cfg.Client.Put(rctx, b.presencePrefix()+id, "", clientv3.WithLease(g.ID)); err != nil {
		b.unreachable(err)
		return false
	}
	ka, err := b.cfg.Client.KeepAlive(ctx, g.ID)
	if err != nil {
		return true
	}
	for range ka {
	}
	return true
}

// ObservePresent calls fn with the IDs of the managers whose presence
// key is there, each time the set changes, until ctx ends. While etcd
// does not answer, the last set stands.
func (b *Backend) ObservePresent(ctx context.Context, fn func(ids map[string]bool)) error {
	return b.observe(ctx, b.presencePrefix(), []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}, func(resp *clientv3.GetResponse) string {
		ids := make([]string, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			ids = append(ids, strings.TrimPrefix(string(kv.Key), b.presencePrefix()))
		}
		return strings.Join(ids, "\n")
	}, func(v string) {
		set := map[string]bool{}
		for _, id := range strings.Split(v, "\n") {
			if id != "" {
				set[id] = true
			}
		}
		fn(set)
	})
}
