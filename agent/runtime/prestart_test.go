package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestPreStartRunsBeforeUserProcess: a link that PreStart adds to the
// container's network namespace is there at the user process's first
// instant, as the agent's overlay interfaces must be.
func TestPreStartRunsBeforeUserProcess(t *testing.T) {
	e := newEnv(t)
	s := e.spec("prestart", "grep", "-q", "pre0", "/proc/net/dev")
	s.PreStart = func(ctx context.Context, pid int) error {
		return addDummy(pid, "pre0")
	}
	e.output(t, s) // fails unless grep found the link
}

// TestPreStartErrorLeavesNothing: a failing PreStart fails Run with its
// error, and the init it was given is gone with the rest.
func TestPreStartErrorLeavesNothing(t *testing.T) {
	e := newEnv(t)
	errHook := errors.New("no network for you")
	var pid int
	s := e.spec("prestart-fails", "sleep", "60")
	s.PreStart = func(ctx context.Context, p int) error {
		pid = p
		return errHook
	}
	_, err := e.rt.Run(context.Background(), s)
	if !errors.Is(err, errHook) || !strings.Contains(err.Error(), "pre-start") {
		t.Fatalf("run: err = %v, want the hook's error", err)
	}
	if pid == 0 {
		t.Fatal("PreStart was not called")
	}
	if _, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
		t.Fatalf("init %d still runs after its PreStart failed", pid)
	}
	assertNothingLeft(t, e, "prestart-fails")
}

func addDummy(pid int, name string) error {
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"})
}
