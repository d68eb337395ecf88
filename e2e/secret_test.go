package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// TestSecretsOnRealHosts: a secret created from stdin is readable, with
// the mode asked, at /run/secrets/NAME in the task of the service that
// names it; a task of another service, on another node, has no
// /run/secrets; the value is on the first node only (its tmpfs) and on no
// manager's disk in clear. A config goes the same way: readable, read-only,
// at its target in that task only, and sent to that task's node only.
func TestSecretsOnRealHosts(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	bb := c.Images.Busybox.Tag
	value := fmt.Sprintf("e2e-pl41n-%d-value", os.Getpid())

	cmd := cliCmd(ctx, c, "secret", "create", "db", "-")
	cmd.Stdin = strings.NewReader(value)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret create: %v: %s", err, out)
	}
	confValue := fmt.Sprintf("e2e-conf-%d-value", os.Getpid())
	cmd = cliCmd(ctx, c, "config", "create", "app", "-")
	cmd.Stdin = strings.NewReader(confValue)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("config create: %v: %s", err, out)
	}
	for _, args := range [][]string{
		{"service", "create", "--detach", "--name", "vault", "--constraint", "node.hostname==a1",
			"--secret", "source=db,target=db_pass,uid=1000,mode=0400",
			"--config", "source=app,target=/etc/app/app.conf,mode=0440", bb, "sleep", "3600"},
		{"service", "create", "--detach", "--name", "plain", "--constraint", "node.hostname==a2", bb, "sleep", "3600"},
	} {
		if _, err := c.CLI(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	runningOn(t, c, "vault", 1)
	runningOn(t, c, "plain", 1)
	var vault, plain *pb.Task
	await.True(t, wait, func() bool {
		vault, plain = liveTasks(t, c, "vault")[1], liveTasks(t, c, "plain")[1]
		return vault != nil && plain != nil
	}, "both tasks run")
	if vault.GetNodeId() == plain.GetNodeId() {
		t.Fatalf("both tasks on node %s, want one each", vault.GetNodeId())
	}

	out, errOut, err := cliOut(ctx, c, "exec", vault.GetId(), "--", "sh", "-c", "cat /run/secrets/db_pass; echo; stat -c '%a %u' /run/secrets/db_pass")
	if err != nil || out != value+"\n400 1000\n" {
		t.Fatalf("in vault's task: %v %q %q, want the value, mode 400, owner 1000", err, out, errOut)
	}
	out, errOut, err = cliOut(ctx, c, "exec", vault.GetId(), "--", "sh", "-c", "cat /etc/app/app.conf; echo; stat -c '%a' /etc/app/app.conf; echo x >/etc/app/app.conf && echo WROTE")
	if out != confValue+"\n440\n" {
		t.Fatalf("in vault's task: %v %q %q, want the config's value, mode 440, and no write", err, out, errOut)
	}
	out, _, err = cliOut(ctx, c, "exec", plain.GetId(), "--", "sh", "-c", "ls /run/secrets; grep -c secrets /proc/mounts")
	if err == nil || strings.Contains(out, "db_pass") {
		t.Fatalf("in plain's task: %v %q, want no /run/secrets", err, out)
	}
	if out, _, err = cliOut(ctx, c, "exec", plain.GetId(), "--", "cat", "/etc/app/app.conf"); err == nil || strings.Contains(out, confValue) {
		t.Fatalf("in plain's task: %v %q, want no /etc/app/app.conf", err, out)
	}

	var holders []string
	for _, n := range append(append([]*e2ecluster.Node{}, c.Managers...), c.Agents...) {
		if holds(t, n.DataDir, value) {
			holders = append(holders, n.Name)
		}
	}
	if len(holders) != 1 || !strings.HasPrefix(holders[0], "a") {
		t.Fatalf("the value is in clear in the data dirs of %v, want only the vault task's agent", holders)
	}

	if _, err := c.CLI(ctx, "secret", "rm", "db"); err == nil || !strings.Contains(err.Error(), "in use by service vault") {
		t.Fatalf("rm of a secret in use: %v", err)
	}
	// Configs are not secret: managers keep them in clear. Among agents,
	// only the vault task's holds the value.
	holders = nil
	for _, n := range c.Agents {
		if holds(t, n.DataDir, confValue) {
			holders = append(holders, n.Name)
		}
	}
	if len(holders) != 1 || holders[0] != "a1" {
		t.Fatalf("the config's value is on agents %v, want only the vault task's", holders)
	}
}

// holds says whether a regular file under dir contains s.
func holds(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file gone while walking (a container's)
		}
		if found || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = true
			t.Logf("%s holds the value", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
