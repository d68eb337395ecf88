package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/testimage"
)

// checkContainerLabels: the service's --container-label reaches its
// containers, where the node's `berth-agent ps --filter label=` finds
// them and `berth-agent inspect` shows them beside berth's own labels.
func checkContainerLabels(t *testing.T, agentBin, data string) {
	t.Helper()
	agentCLI := func(args ...string) (string, error) {
		out, err := exec.CommandContext(t.Context(), agentBin, append(args, "--data-dir", data)...).Output()
		return string(out), err
	}
	out, err := agentCLI("ps", "-q", "--filter", "label=team=blue", "--filter", "status=running")
	ids := strings.Fields(out)
	if err != nil || len(ids) != 3 {
		t.Fatalf("berth-agent ps -q --filter label=team=blue: %v, %q; want the service's 3 containers", err, out)
	}
	out, err = agentCLI("inspect", ids[0])
	var got []struct {
		Owner  string            `json:"owner"`
		Labels map[string]string `json:"labels"`
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 {
		t.Fatalf("berth-agent inspect %s: %v, %q", ids[0], err, out)
	}
	l := got[0].Labels
	if got[0].Owner != "agent" || l["team"] != "blue" || l["berth.task.id"] != ids[0] || l["berth.service.id"] == "" || l["berth.node.id"] == "" {
		t.Errorf("berth-agent inspect %s = %+v, want owner agent, team=blue and berth's task, service and node labels", ids[0], got[0])
	}
}

// TestDevRunsContainers: `berth-manager --dev` is a whole cluster on one
// machine; `berth service create` runs real containers on it with no more
// set-up, and `service rm` stops them.
func TestDevRunsContainers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containers")
	}
	if testing.Short() {
		t.Skip("builds the binaries and runs a cluster")
	}
	bins, err := e2ecluster.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	images := testimage.Serve(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cgroups := e2ecluster.TestCgroupParent(t)
	// In the host's own network namespace: no overlay, so that the test
	// leaves no bridge or nftables table there (TestDevPublishes has one).
	mgr := exec.Command(bins.Manager, append([]string{"--dev", "--overlay=false", "--data-dir", dir, "--listen-addr", addr, "--cgroup-parent", cgroups}, storeArgs(t)...)...)
	mgr.Env = append(os.Environ(), "HOME="+dir)
	var logs bytes.Buffer
	mgr.Stdout, mgr.Stderr = &logs, &logs
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			mgr.Process.Signal(syscall.SIGTERM)
			mgr.Wait()
		}
	}
	t.Cleanup(func() {
		stop()
		// The agent leaves its containers (none after service rm) for the
		// next agent to adopt.
		if err := e2ecluster.CleanupAgent(filepath.Join(dir, "agent")); err != nil {
			t.Errorf("clean up the --dev agent: %v", err)
		}
		if t.Failed() {
			t.Logf("berth-manager --dev log:\n%s", logs.String())
		}
	})

	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bins.CLI, args...)
		// The CLI finds the bundle --dev installed in $HOME/.berth.
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	type task struct {
		DesiredState string `json:"desired_state"`
		Status       struct {
			State string `json:"state"`
		} `json:"status"`
	}
	running := func(svc string) int {
		out, err := cli("service", "ps", svc, "--format", "json")
		if err != nil {
			return -1
		}
		var ts []task
		if json.Unmarshal([]byte(out), &ts) != nil {
			return -1
		}
		n := 0
		for _, tk := range ts {
			if tk.DesiredState == "TASK_STATE_RUNNING" && tk.Status.State == "TASK_STATE_RUNNING" {
				n++
			}
		}
		return n
	}

	await.True(t, 60*time.Second, func() bool {
		out, err := cli("node", "ls")
		return err == nil && strings.Count(out, "ready") == 2
	}, "the --dev manager and its agent are ready (berth node ls with no flags)")
	out, err := cli("service", "create", "--name", "dev", "--replicas", "3", "--container-label", "team=blue", images.Busybox.Tag, "sleep", "3600")
	if err != nil || !strings.Contains(out, "3 out of 3 tasks running") {
		t.Fatalf("service create: %v\n%s", err, out)
	}
	if n := running("dev"); n != 3 {
		t.Fatalf("%d tasks running after create converged, want 3", n)
	}
	checkContainerLabels(t, bins.Agent, filepath.Join(dir, "agent"))
	if n := len(e2ecluster.CgroupDirs(cgroups)); n == 0 {
		t.Fatalf("no cgroup under --cgroup-parent %s with 3 tasks running", cgroups)
	}
	if out, err := cli("service", "rm", "dev"); err != nil {
		t.Fatalf("service rm: %v\n%s", err, out)
	}
	containers := filepath.Join(dir, "agent", "runtime", "containers")
	await.True(t, 30*time.Second, func() bool {
		entries, err := os.ReadDir(containers)
		return err == nil && len(entries) == 0
	}, "service rm stops and deletes the containers under %s", containers)
	stop()
	if code := mgr.ProcessState.ExitCode(); code != 0 {
		t.Errorf("berth-manager --dev exited %d on SIGTERM, want 0", code)
	}
	// Nor an empty cgroup: its agent removes its parent's directories.
	if left := e2ecluster.CgroupDirs(cgroups); len(left) != 0 {
		t.Errorf("berth-manager --dev left %d cgroups after a clean stop with no task: %q", len(left), left)
	}
	// A clean stop leaves no mount behind: the agent's secrets tmpfs goes
	// with it (no container is left to use it).
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("berth-manager --dev left %s mounted (%s)", m.Mountpoint, m.FSType)
	}
}
