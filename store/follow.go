package store

import (
	"context"
	"errors"
	"log/slog"
)

// Follow runs follow — a loop's snapshot and the watch from its index —
// again each time it ends needing a fresh view (NeedsResync), until ctx
// ends (then it returns nil) or follow fails for another reason, which it
// returns. A watch that closes without an error counts as a failure.
func Follow(ctx context.Context, log *slog.Logger, follow func(context.Context) error) error {
	for {
		err := follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !NeedsResync(err) {
			if err == nil {
				err = errors.New("store watch closed")
			}
			return err
		}
		log.Info("store watch ended; starting over from a fresh view", "err", err)
	}
}
