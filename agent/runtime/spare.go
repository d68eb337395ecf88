package runtime

import (
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// A spare init is started ahead for the next container (Config.SpareInit):
// a start that takes it skips the creation of the init's process in new
// namespaces and the boot of its Go runtime, about 2.5 ms of 7. It waits
// for a config on its sync socket and ends when that closes: when the
// agent exits, however it exits, or when Close ends it. It sits in the
// agent's cgroup until a container takes it and moves it into its own.
// Only a container with the spare's namespaces takes it: the default,
// its own network and no user namespace.

// spareable reports whether a container of s can take a spare init.
func spareable(s *Spec) bool { return !s.UserNS && !s.HostNetwork }

// spares keeps at most one spare init ready.
type spares struct {
	make func() (*initProc, error)
	log  *slog.Logger

	mu     sync.Mutex
	ready  *initProc
	making chan struct{} // closed once the spare in the making is ready or failed; nil when none is
	closed bool
	wg     sync.WaitGroup // the goroutine making one
}

// take returns the spare, waiting for one in the making (it is further on
// than a new one would be), or nil when there is none or it died.
func (sp *spares) take() *initProc {
	sp.mu.Lock()
	making := sp.making
	sp.mu.Unlock()
	if making != nil {
		<-making
	}
	sp.mu.Lock()
	p := sp.ready
	sp.ready = nil
	sp.mu.Unlock()
	if p != nil && !p.alive() {
		sp.log.Warn("the spare container init had died; starting another", "pid", p.proc.Pid)
		p.kill()
		return nil
	}
	return p
}

// refill starts making a spare unless one is ready or in the making.
func (sp *spares) refill() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || sp.ready != nil || sp.making != nil {
		return
	}
	done := make(chan struct{})
	sp.making = done
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		p, err := sp.make()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		sp.making = nil
		close(done)
		switch {
		case err != nil:
			sp.log.Warn("start a spare container init", "err", err)
		case sp.closed:
			p.kill()
		default:
			sp.ready = p
		}
	}()
}

// close ends the spare, and one in the making, and waits for them.
func (sp *spares) close() {
	sp.mu.Lock()
	sp.closed = true
	p := sp.ready
	sp.ready = nil
	sp.mu.Unlock()
	if p != nil {
		p.kill()
	}
	sp.wg.Wait()
}

// alive reports whether the init has not exited: its pidfd turns readable
// when it does.
func (p *initProc) alive() bool {
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 0
}
