package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/moby/sys/mountinfo"
)

// TestMakeDemoCtrlC: `make demo` run on a terminal (a pty) and stopped
// with Ctrl-C tears the cluster down and exits 0, leaving no mount behind
// in its data dir. (The terminal sends SIGINT to its foreground process
// group; make dies of one it gets, after its recipe ends.)
func TestMakeDemoCtrlC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a cluster on test hosts")
	}
	if testing.Short() {
		t.Skip("builds the binaries and runs a cluster")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-C", root, "demo", "DEMO_FLAGS=-managers 1 -agents 1")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	out := tty
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			exec.Command("make", "-C", root, "demo-down").Run()
		}
	})
	var log strings.Builder
	up := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Press Ctrl-C here") {
				close(up)
			}
		}
	}()
	select {
	case <-up:
	case <-done:
		t.Fatalf("make demo ended before the cluster was up:\n%s", log.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("the demo cluster is not up after 5 minutes:\n%s", log.String())
	}
	if _, err := tty.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	err = cmd.Wait()
	tty.Close()
	<-done
	if err != nil {
		t.Fatalf("make demo after Ctrl-C: %v, want exit 0:\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "tearing down") {
		t.Errorf("make demo did not say it tore down:\n%s", log.String())
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Join(root, "demo-data")))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("the demo left %s mounted (%s)", m.Mountpoint, m.FSType)
	}
}
