package testhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// Sweep removes the objects of every run whose owner process is dead:
// processes left in its namespaces, the namespaces, links, nft tables,
// firewall accept rules, and the run's record. Runs of live processes are
// left alone. Create sweeps on its own; Sweep is for tooling (make clean).
func Sweep(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	unlock, err := lock(ctx)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	defer unlock()
	if err := sweepLocked(ctx, log); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

// sweepLocked is Sweep for a caller holding the lock.
func sweepLocked(ctx context.Context, log *slog.Logger) error {
	live, dead, err := liveRuns()
	if err != nil {
		return err
	}
	stale := func(name string) bool {
		id := runOf(name)
		return id != "" && !live[id]
	}
	var errs []error
	names, err := netnsNames()
	errs = append(errs, err)
	for _, n := range names {
		if stale(n) {
			log.Debug("testhost sweep netns", "netns", n)
			errs = append(errs, deleteNetns(n))
		}
	}
	errs = append(errs, removeAllowed(ctx, stale))
	errs = append(errs, deleteTables(ctx, stale))
	errs = append(errs, deleteLinks(stale))
	if err := errors.Join(errs...); err != nil {
		return err // keep the records, so the next sweep tries again
	}
	for _, id := range dead {
		log.Debug("testhost sweep run", "run", id)
		if err := os.Remove(pidFile(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove record of run %s: %w", id, err)
		}
	}
	return nil
}
