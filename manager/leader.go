package manager

import (
	"context"

	"golang.org/x/sync/errgroup"

	"berth/deploy"
	"berth/manager/assign"
	"berth/overlay/allocator"
)

// leaderLoops runs while this manager leads, under one errgroup with the
// leadership's context (DESIGN.md): cluster bookkeeping, the gossip key
// rotation, the dispatcher's term, and the control loops that turn
// desired state into assigned tasks. One failing ends the term's loops;
// the next term starts them again from the store.
func (m *Manager) leaderLoops(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.ensureCluster(gctx) })
	g.Go(func() error { return m.keyRotator().run(gctx) })
	g.Go(func() error { return m.dispatcher.Run(gctx) })
	assigner, err := assign.New(assign.Config{Store: m.be.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "assign")})
	if err != nil {
		return err
	}
	g.Go(func() error { return assigner.Run(gctx) })
	alloc, err := allocator.New(allocator.Config{Store: m.be.Store(), ClusterID: m.clusterID, Now: m.cfg.Now, Log: m.log.With("loop", "allocator")})
	if err != nil {
		return err
	}
	g.Go(func() error { return alloc.Run(gctx) })
	orch, err := deploy.New(deploy.Config{Store: m.be.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "orchestrator")})
	if err != nil {
		return err
	}
	g.Go(func() error { return orch.Run(gctx) })
	upd, err := deploy.NewUpdater(deploy.Config{Store: m.be.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "updater")})
	if err != nil {
		return err
	}
	g.Go(func() error { return upd.Run(gctx) })
	// The term lasts until leadership ends, whatever one-shot work finished.
	g.Go(func() error { <-gctx.Done(); return nil })
	return g.Wait()
}
