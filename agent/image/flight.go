package image

import (
	"context"
	"sync"
)

// flight runs one piece of work per key at a time and shares its result with
// every caller that asks for the same key meanwhile (like singleflight), and
// fans progress out to all of them. The work runs under its own context that
// is cancelled only when every caller has given up, so one impatient caller
// does not fail the others.
type flight[T any] struct {
	// waitCancelled makes the caller whose leaving cancels the work wait
	// until the work has ended, so that whatever it leaves on disk is
	// settled when that caller returns.
	waitCancelled bool

	mu    sync.Mutex
	calls map[string]*call[T]
	wg    sync.WaitGroup
}

type call[T any] struct {
	key     string
	done    chan struct{}
	val     T
	err     error
	cancel  context.CancelFunc
	waiters int
	next    int
	subs    map[int]func(Progress)
	emitMu  sync.Mutex // one progress call at a time, in order
}

// do runs fn for key, or joins the run already under way. Progress that fn
// emits reaches every joined caller's progress func (nil is allowed), one
// call at a time even when fn emits from several goroutines. joined
// reports whether the caller shared a run someone else started.
func (f *flight[T]) do(ctx context.Context, key string, progress func(Progress),
	fn func(ctx context.Context, emit func(Progress)) (T, error)) (val T, joined bool, err error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c, joined := f.calls[key]
	if !joined {
		c = &call[T]{key: key, done: make(chan struct{}), subs: map[int]func(Progress){}}
		var wctx context.Context
		wctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
		f.calls[key] = c
		f.wg.Add(1)
		go f.run(wctx, c, fn)
	}
	c.waiters++
	id := c.next
	c.next++
	if progress != nil {
		c.subs[id] = progress
	}
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.val, joined, c.err
	case <-ctx.Done():
		if f.leave(c, id) && f.waitCancelled {
			<-c.done
		}
		var zero T
		return zero, joined, ctx.Err()
	}
}

func (f *flight[T]) run(ctx context.Context, c *call[T], fn func(context.Context, func(Progress)) (T, error)) {
	defer f.wg.Done()
	defer c.cancel()
	emit := func(p Progress) {
		c.emitMu.Lock()
		defer c.emitMu.Unlock()
		f.mu.Lock()
		subs := make([]func(Progress), 0, len(c.subs))
		for _, s := range c.subs {
			subs = append(subs, s)
		}
		f.mu.Unlock()
		for _, s := range subs {
			s(p)
		}
	}
	val, err := fn(ctx, emit)
	f.mu.Lock()
	c.val, c.err = val, err
	f.forget(c)
	f.mu.Unlock()
	close(c.done)
}

// leave drops a caller; the last one to leave cancels the work and
// reports so.
func (f *flight[T]) leave(c *call[T], id int) (cancelled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(c.subs, id)
	c.waiters--
	if c.waiters == 0 {
		c.cancel()
		f.forget(c) // a new caller starts afresh rather than join a cancelled run
		return true
	}
	return false
}

// forget removes c from the map unless a newer call took its key. f.mu is held.
func (f *flight[T]) forget(c *call[T]) {
	if f.calls[c.key] == c {
		delete(f.calls, c.key)
	}
}

// running reports whether work for key is under way.
func (f *flight[T]) running(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[key]
	return ok
}

// wait blocks until every run has finished.
func (f *flight[T]) wait() { f.wg.Wait() }
