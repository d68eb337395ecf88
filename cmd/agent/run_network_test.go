package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunNetworkRefusals: --network combinations that cannot work, and
// --network on a node whose daemon is not running, are refused before
// anything is pulled or run, naming the flag and the fix.
func TestRunNetworkRefusals(t *testing.T) {
	a, fx := newAgentCLI(t)
	img := fx.Busybox.Tag
	sock := filepath.Join(a.data, "agent.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--network-host", "--network", "n1", img, "true"}, "--network with --network-host"},
		{[]string{"--network-alias", "a1", img, "true"}, "--network-alias without --network"},
		{[]string{"--network", "", img, "true"}, `--network "": give a network's name or ID`},
		{[]string{"--network", "n1", "--network-alias", "a b", img, "true"}, `--network-alias "a b"`},
		{[]string{"--network", "n1", img, "true"}, "--network needs the node's berth-agent daemon: no socket at " + sock +
			"; start berth-agent with --data-dir " + a.data + ", or run without --network"},
	} {
		out, errOut, code := a.do("", "run", tc.args...)
		if code != 125 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("run %q: exit %d, stdout %q, stderr %q; want 125 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(a.data, runDir, "containers")); len(entries) != 0 {
		t.Errorf("refused runs left %d containers", len(entries))
	}
	if _, err := os.Stat(filepath.Join(a.data, "images")); !os.IsNotExist(err) {
		t.Errorf("refused runs opened the image store (pulled?): %v", err)
	}
}
