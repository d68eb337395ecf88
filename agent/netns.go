package agent

import (
	"errors"
	"fmt"
	goruntime "runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on an OS thread switched into the network namespace ns;
// sockets fn creates belong to ns for their whole life. The thread goes
// back to its own namespace before it is released to other goroutines; if
// it cannot, it stays locked and dies with this goroutine.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("enter the container's network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave the container's network namespace: %w", err))
			return // still locked: the runtime ends this thread
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsPath is the network namespace of ctr's init: the runtime's own
// answer where the container offers one.
func netnsPath(ctr Container) string {
	if n, ok := ctr.(interface{ NetnsPath() string }); ok {
		return n.NetnsPath()
	}
	return fmt.Sprintf("/proc/%d/ns/net", ctr.Pid())
}
