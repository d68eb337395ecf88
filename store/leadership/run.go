package leadership

import (
	"context"
	"log/slog"
	"time"
)

// Options tune Run. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Backoff is how long to wait before restarting fn after it returned
	// while still leader. Default 1s.
	Backoff time.Duration
}

// term is one run of fn.
type term struct {
	cancel context.CancelFunc
	done   chan error
}

func start(ctx context.Context, fn func(context.Context) error) *term {
	tctx, cancel := context.WithCancel(ctx)
	t := &term{cancel: cancel, done: make(chan error, 1)}
	go func() { t.done <- fn(tctx) }()
	return t
}

// stop cancels the term and waits for fn to return.
func (t *term) stop() error {
	if t == nil {
		return nil
	}
	t.cancel()
	return <-t.done
}

// Run follows changes (true: this node leads; the latest value matters,
// repeats are harmless) and runs fn while it leads. It returns nil when ctx
// ends or changes is closed, after fn has returned.
func Run(ctx context.Context, changes <-chan bool, fn func(context.Context) error, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := opts.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	var (
		cur     *term
		leading bool
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	stopRetry := func() {
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
		}
	}
	defer stopRetry()
	for {
		var done <-chan error
		if cur != nil {
			done = cur.done
		}
		select {
		case <-ctx.Done():
			logEnd(log, cur.stop(), "context ended")
			return nil
		case v, ok := <-changes:
			if !ok {
				logEnd(log, cur.stop(), "leadership changes closed")
				return nil
			}
			leading = v
			switch {
			case !v && cur != nil:
				logEnd(log, cur.stop(), "leadership lost")
				cur = nil
				stopRetry()
			case !v:
				stopRetry()
			case cur == nil && retryC == nil:
				log.Info("leadership gained: starting leader loops")
				cur = start(ctx, fn)
			}
		case err := <-done:
			cur = nil
			log.Error("leader loops stopped while still leader; restarting after backoff", "err", err, "backoff", backoff)
			retry = time.NewTimer(backoff)
			retryC = retry.C
		case <-retryC:
			retry, retryC = nil, nil
			if leading {
				log.Info("restarting leader loops")
				cur = start(ctx, fn)
			}
		}
	}
}

func logEnd(log *slog.Logger, err error, why string) {
	if err != nil && err != context.Canceled {
		log.Warn("leader loops ended with an error", "why", why, "err", err)
		return
	}
	log.Info("leader loops stopped", "why", why)
}
