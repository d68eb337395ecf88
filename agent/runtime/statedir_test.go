package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStateOnTmpfsLogsOnDisk: a container's runtime state is on the tmpfs
// the runtime mounts, its logs on the data dir's file system; a second
// runtime on the data dir shares the mount, the last one out with no
// container left unmounts it, and logs of containers whose state a reboot
// took are removed by Adopt.
func TestStateOnTmpfsLogsOnDisk(t *testing.T) {
	e := newEnv(t)
	dataOnTmpfs, err := onTmpfs(e.rt.cfg.DataDir)
	must(t, err)
	c := e.run(t, e.spec("stateful", "echo", "hi"))
	e.wait(t, c)
	if tmpfs, err := onTmpfs(e.rt.containerDir("stateful")); err != nil || !tmpfs {
		t.Fatalf("state dir on a tmpfs: %v, %v", tmpfs, err)
	}
	for _, f := range []string{stateFile, "exit.json", "init.log"} {
		if _, err := os.Stat(filepath.Join(e.rt.containerDir("stateful"), f)); err != nil {
			t.Errorf("state file: %v", err)
		}
	}
	if tmpfs, err := onTmpfs(c.LogPath()); err != nil || tmpfs != dataOnTmpfs {
		t.Fatalf("log %s on a tmpfs: %v, %v; the data dir's is %v", c.LogPath(), tmpfs, err, dataOnTmpfs)
	}
	if got := e.logs(t, "stateful"); got != "hi\n" {
		t.Fatalf("logs = %q", got)
	}

	state := e.rt.cfg.StateDir
	rt2 := e.newRuntime(t)
	if n := len(mountsUnder(state)); !dataOnTmpfs && n != 1 {
		t.Fatalf("%d mounts on %s with two runtimes open, want 1", n, state)
	}
	ghost := e.rt.logDir("ghost") // a container's logs whose state a reboot took
	must(t, os.MkdirAll(ghost, 0o700))
	must(t, os.WriteFile(filepath.Join(ghost, logName), []byte("old\n"), 0o600))
	adopted, err := rt2.Adopt(context.Background())
	must(t, err)
	if len(adopted) != 1 || adopted[0].ID() != "stateful" {
		t.Fatalf("adopted %v, want stateful only", adopted)
	}
	if _, err := os.Stat(ghost); !os.IsNotExist(err) {
		t.Fatalf("logs of a container without state left: %v", err)
	}

	must(t, c.Delete(context.Background()))
	rt2.Close()
	if !dataOnTmpfs && len(mountsUnder(state)) != 1 {
		t.Fatal("the state tmpfs went while another runtime had it open")
	}
	e.rt.Close()
	if n := len(mountsUnder(state)); n != 0 {
		t.Fatalf("%d mounts left on %s after the last runtime closed with no container", n, state)
	}
}

// TestAdoptsContainersOfTheOldLayout: an agent from before the state
// tmpfs kept a container's record beside its logs; after an upgrade the
// new agent adopts such a container (it still runs) rather than taking
// its directory for logs a reboot orphaned.
func TestAdoptsContainersOfTheOldLayout(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("old", "sleep", "1000"))
	pid := c.Pid()
	e.rt.Close()
	// The old layout: state.json in DataDir/containers/<id>, no state dir.
	data, err := os.ReadFile(filepath.Join(e.rt.containerDir("old"), stateFile))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(e.rt.logDir("old"), stateFile), data, 0o600))
	must(t, os.RemoveAll(e.rt.containerDir("old")))

	rt2 := e.newRuntime(t)
	e.rt = rt2
	adopted, err := rt2.Adopt(context.Background())
	must(t, err)
	if len(adopted) != 1 || adopted[0].ID() != "old" || !adopted[0].Running() || adopted[0].Pid() != pid {
		t.Fatalf("adopted %v, want the running container old with pid %d", adopted, pid)
	}
	if _, err := os.Stat(rt2.logDir("old")); err != nil {
		t.Fatalf("the old layout's directory: %v", err)
	}
	must(t, adopted[0].Kill(unix.SIGKILL))
	if st := e.wait(t, adopted[0]); st.Code != 137 {
		t.Fatalf("exit of the adopted container: %+v", st)
	}
	must(t, adopted[0].Delete(context.Background()))
	if _, err := os.Stat(rt2.logDir("old")); !os.IsNotExist(err) {
		t.Fatalf("delete left the old layout's directory: %v", err)
	}
}
