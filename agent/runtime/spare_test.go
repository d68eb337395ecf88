package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/await"
)

// readySpare waits for e's runtime to have a spare init ready and
// returns it, left in place.
func readySpare(t *testing.T, e *env) *initProc {
	t.Helper()
	var p *initProc
	await.True(t, 10*time.Second, func() bool {
		e.rt.spares.mu.Lock()
		defer e.rt.spares.mu.Unlock()
		p = e.rt.spares.ready
		return p != nil
	}, "no spare init started")
	return p
}

// TestSpareInitRunsTheNextContainer: a container takes the spare init
// (its PID 1 is the spare) and runs as any other; a container with other
// namespaces leaves it; a spare that died is passed over; one whose agent
// went away ends; Close ends the spare and leaves no process.
func TestSpareInitRunsTheNextContainer(t *testing.T) {
	e := newEnv(t)
	spare := readySpare(t, e)
	s := e.spec("spared", "sh", "-c", "hostname; tr '\\0' ' ' </proc/1/cmdline")
	s.Hostname = "spared-host"
	c := e.run(t, s)
	if c.Pid() != spare.proc.Pid {
		t.Fatalf("container init pid %d, want the spare's %d", c.Pid(), spare.proc.Pid)
	}
	e.wait(t, c)
	if got := e.logs(t, "spared"); got != "spared-host\nberth-init " {
		t.Fatalf("logs of a container on the spare = %q", got)
	}

	spare = readySpare(t, e)
	host := e.spec("hostnet", "true")
	host.HostNetwork = true
	if c := e.run(t, host); c.Pid() == spare.proc.Pid {
		t.Fatal("a host-network container took the spare, made with its own network namespace")
	}
	if !spare.alive() {
		t.Fatal("the spare died when a container of other namespaces started")
	}

	must(t, spare.proc.Kill()) // as the OOM killer might
	await.True(t, 10*time.Second, func() bool { return !spare.alive() }, "killed spare still alive")
	c = e.run(t, e.spec("after-dead-spare", "true"))
	if c.Pid() == spare.proc.Pid {
		t.Fatal("a dead spare was taken")
	}
	if st := e.wait(t, c); st.Code != 0 {
		t.Fatalf("container after a dead spare: %+v", st)
	}

	spare = readySpare(t, e)
	spare.conn.Close() // its agent is gone
	await.True(t, 10*time.Second, func() bool { return !spare.alive() }, "spare outlived its agent's end of the socket")
	if st := e.wait(t, e.run(t, e.spec("after-gone-spare", "true"))); st.Code != 0 {
		t.Fatalf("container after a spare that ended: %+v", st)
	}

	spare = readySpare(t, e)
	e.rt.Close()
	if err := unix.Kill(spare.proc.Pid, 0); err != unix.ESRCH {
		t.Fatalf("spare pid %d after Close: %v, want gone (ESRCH)", spare.proc.Pid, err)
	}
	if _, err := e.rt.Run(context.Background(), e.spec("closed", "true")); err == nil {
		t.Fatal("a closed runtime ran a container")
	}
}

// TestSpareSeesMountsMadeAfterIt: a spare init's mount namespace is a
// copy of the agent's at its birth, but a container on it gets the rootfs
// and bind sources mounted since (the image store mounts a task's overlay
// rootfs just before its start), not the bare directories under them.
func TestSpareSeesMountsMadeAfterIt(t *testing.T) {
	e := newEnv(t)
	rootfs, data := filepath.Join(e.dir, "late-rootfs"), filepath.Join(e.dir, "late-data")
	must(t, os.Mkdir(rootfs, 0o755))
	must(t, os.Mkdir(data, 0o755))
	spare := readySpare(t, e)
	must(t, unix.Mount(e.rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""))
	must(t, unix.Mount("tmpfs", data, "tmpfs", 0, "size=1m"))
	must(t, os.WriteFile(filepath.Join(data, "fresh"), []byte("mounted after the spare\n"), 0o644))
	s := e.spec("late", "cat", "/data/fresh")
	s.Rootfs = rootfs
	s.Mounts = []Mount{{Type: MountBind, Source: data, Target: "/data", ReadOnly: true}}
	c, err := e.rt.Run(context.Background(), s)
	if err != nil {
		t.Fatalf("run on a rootfs mounted after the spare started: %v", err)
	}
	if c.Pid() != spare.proc.Pid {
		t.Fatalf("container init pid %d, want the spare's %d", c.Pid(), spare.proc.Pid)
	}
	if st := e.wait(t, c); st.Code != 0 {
		t.Fatalf("exit %+v, logs %q", st, e.logs(t, "late"))
	}
	if got := e.logs(t, "late"); got != "mounted after the spare\n" {
		t.Fatalf("logs = %q", got)
	}
}
