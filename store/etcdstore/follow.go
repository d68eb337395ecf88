package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// probeEvery is how often Run asks etcd whether it answers, so that an
// unreachable etcd is said (and its return) even when nothing is written.
const probeEvery = time.Second

// errCompacted ends a watch whose start revision etcd compacted away.
var errCompacted = errors.New("etcd compacted the revisions this watch needed")

// Run follows etcd until ctx ends: it applies each write to the store in
// revision order, and when the watch breaks (etcd compacted the revisions
// it needed, or lost its quorum) loads a fresh snapshot and watches from
// there, as the Raft backend restores a snapshot; the store's watchers
// then start over from the new state.
func (b *Backend) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.follow(gctx) })
	g.Go(func() error { return b.probe(gctx) })
	return g.Wait()
}

func (b *Backend) follow(ctx context.Context) error {
	from := b.from
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := b.watch(ctx, from)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errCompacted) {
			b.log.Info("etcd compacted past this manager's watch; loading a fresh snapshot", "from", from)
			wait = 0
		} else {
			b.log.Warn("etcd watch ended; loading a fresh snapshot", "etcd", b.endpoints, "err", err)
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			if from, err = b.load(ctx); err == nil {
				break
			}
			wait = min(2*wait+100*time.Millisecond, 5*time.Second)
		}
	}
}

// load reads the whole prefix at one revision into the store and returns
// the revision to watch from. The store's index is that of the last write
// (P/batch's revision): the index writes are guarded by.
func (b *Backend) load(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	resp, err := b.cfg.Client.Get(rctx, b.keys.prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return 0, b.unreachable(err)
	}
	b.answered()
	var index uint64
	objs := make([]store.Versioned, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		switch {
		case k == b.keys.batch:
			index = uint64(kv.ModRevision)
		case strings.HasPrefix(k, b.keys.objects):
			var a berthv1.StoreAction
			if err := proto.Unmarshal(kv.Value, &a); err != nil {
				return 0, fmt.Errorf("etcd key %s: decode: %w; the prefix holds what this version cannot read: upgrade it", k, err)
			}
			objs = append(objs, store.Versioned{Action: &a, Version: uint64(kv.ModRevision)})
		}
	}
	if err := b.store.Reset(index, objs); err != nil {
		return 0, fmt.Errorf("load etcd snapshot at revision %d: %w", resp.Header.Revision, err)
	}
	return resp.Header.Revision + 1, nil
}

// watch applies the writes from revision from on until the watch breaks.
func (b *Backend) watch(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range b.cfg.Client.Watch(wctx, b.keys.batch, clientv3.WithRev(from)) {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch from %d, compacted at %d: %w", from, resp.CompactRevision, errCompacted)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		b.answered()
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue // P/batch is never deleted by berth
			}
			if err := b.apply(ev.Kv.ModRevision, ev.Kv.Value); err != nil {
				return err
			}
			from = ev.Kv.ModRevision + 1
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("etcd closed the watch")
}

// apply applies one write. Writes are checked against the state they
// commit on, so Apply refuses none; one it refuses means the prefix was
// written by something other than berth.
func (b *Backend) apply(rev int64, value []byte) error {
	var batch berthv1.StoreBatch
	if err := proto.Unmarshal(value, &batch); err != nil {
		return fmt.Errorf("etcd write at revision %d: decode: %w", rev, err)
	}
	if err := b.store.Apply(uint64(rev), &batch); err != nil {
		b.log.Error("etcd write refused by the store: was the prefix written by something other than berth?", "revision", rev, "err", err)
	}
	return nil
}

// probe asks etcd now and then whether it answers, to say so when it
// stops and when it is back.
func (b *Backend) probe(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(probeEvery):
		}
		rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		_, err := b.cfg.Client.Get(rctx, b.keys.format)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			b.unreachable(err)
		default:
			b.answered()
		}
	}
}
