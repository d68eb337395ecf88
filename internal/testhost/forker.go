package testhost

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// forker starts a cluster's processes from one OS thread that lives until
// the cluster is closed.
//
// Pdeathsig is tied to the thread that forked the child, not to the
// process: the child gets its signal when that thread exits (prctl(2),
// PR_SET_PDEATHSIG). Go ends a thread whenever a goroutine that locked it
// returns without unlocking, which the netns helpers (overlay/dataplane,
// agent/image's mountAt, tests' own) do on purpose to discard a thread
// left in another namespace or working directory. Forked from an ordinary
// goroutine, a child could be killed long after Start by whichever
// goroutine next locked that thread and returned. Here nothing else runs
// on the forking thread, so it exits only when the forker stops, after
// Close has killed every child anyway, or with the whole process.
type forker struct {
	reqs chan forkReq
	stop chan struct{}
	once sync.Once
}

type forkReq struct {
	cmd  *exec.Cmd
	errc chan error
}

// errClosed is Start's error on a closed cluster.
var errClosed = errors.New("cluster closed")

func newForker() *forker {
	f := &forker{reqs: make(chan forkReq), stop: make(chan struct{})}
	go f.loop()
	return f
}

func (f *forker) loop() {
	runtime.LockOSThread() // never unlocked: see forker
	for {
		select {
		case r := <-f.reqs:
			r.errc <- r.cmd.Start()
		case <-f.stop:
			return
		}
	}
}

// start starts cmd on the forker's thread.
func (f *forker) start(cmd *exec.Cmd) error {
	r := forkReq{cmd: cmd, errc: make(chan error, 1)}
	select {
	case f.reqs <- r:
		return <-r.errc
	case <-f.stop:
		return errClosed
	}
}

// close ends the forker's thread; call it after its children are gone,
// since they get their Pdeathsig then. Later calls do nothing.
func (f *forker) close() { f.once.Do(func() { close(f.stop) }) }
