package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
)

// TestConfigCommands: config create (from a file and from stdin), ls,
// inspect (the value shown, unlike a secret's) and rm against a real
// manager; services name configs with --config in both forms, default
// target /NAME, and drop them with --config-rm; rm refuses a config in
// use, naming every service that uses it.
func TestConfigCommands(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	await.NoError(t, 20*time.Second, func() error { _, err := run("config", "ls"); return err }, "berth config ls")

	file := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(file, []byte("listen 8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run("config", "create", "--label", "team=a", "app", file); err != nil {
		t.Fatal(err)
	}
	if _, err := berthStdin(t, "level=debug", "--tls-dir", bundle, "config", "create", "log", "-"); err != nil {
		t.Fatalf("config create from stdin: %v", err)
	}
	if _, err := run("config", "create", "app", file); err == nil || !strings.Contains(err.Error(), "app") {
		t.Fatalf("a second config named app: %v", err)
	}
	if _, err := run("config", "create", "empty", os.DevNull); err == nil || !strings.Contains(err.Error(), "config is empty") {
		t.Fatalf("an empty config: %v", err)
	}

	if out, err := run("config", "ls"); err != nil || !strings.Contains(out, "app") || !strings.Contains(out, "log") || !strings.Contains(out, "team=a") {
		t.Errorf("config ls: %v\n%s", err, out)
	}
	if out, err := run("config", "ls", "--format", "{{.Name}}:{{.Labels}}"); err != nil || out != "app:team=a\nlog:\n" {
		t.Errorf("config ls --format {{.Name}}:{{.Labels}}: %v %q", err, out)
	}
	if out, err := run("config", "inspect", "--pretty", "app"); err != nil || !strings.Contains(out, "Name:\t\tapp\n") || !strings.Contains(out, "Data:\nlisten 8080\n") {
		t.Errorf("config inspect --pretty app: %v\n%s", err, out)
	}
	// The JSON has the value (base64, as bytes are in JSON).
	var inspected []struct {
		Spec struct {
			Data []byte `json:"data"`
		} `json:"spec"`
	}
	out, err := run("config", "inspect", "log")
	if err != nil || json.Unmarshal([]byte(out), &inspected) != nil || len(inspected) != 1 || string(inspected[0].Spec.Data) != "level=debug" {
		t.Errorf("config inspect log: %v\n%s", err, out)
	}

	if _, err := run("service", "create", "-d", "--name", "web", "--config", "app",
		"--config", "source=log,target=/etc/log.conf,uid=1000,gid=1001,mode=0440", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("service", "create", "-d", "--name", "worker", "--config", "source=app,target=etc/app.conf", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	refs := `{{range .Spec.Task.Container.Configs}}{{.ConfigName}}@{{.FileName}}:{{.Uid}}:{{.Gid}}:{{.Mode}} {{end}}`
	if out, err := run("service", "inspect", "--format", refs, "web", "worker"); err != nil ||
		out != "app@/app:0:0:292 log@/etc/log.conf:1000:1001:288 \napp@/etc/app.conf:0:0:292 \n" {
		t.Fatalf("the services' configs: %v %q", err, out)
	}
	if out, err := run("service", "inspect", "--pretty", "web"); err != nil || !strings.Contains(out, " Config:\tapp at /app\n Config:\tlog at /etc/log.conf\n") {
		t.Errorf("service inspect --pretty web: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "create", "-d", "--name", "x", "--config", "nope", "busybox:latest"}, "config \"nope\" does not exist; create it with `berth config create nope FILE`"},
		{[]string{"service", "create", "-d", "--name", "x", "--config", "source=app,target=/etc/../../x", "busybox:latest"}, "contains '..'"},
		{[]string{"service", "create", "-d", "--name", "x", "--config", "source=app,target=/proc/x", "busybox:latest"}, "under /proc"},
		{[]string{"service", "create", "-d", "--name", "x", "--config", "app", "--config", "source=log,target=/app", "busybox:latest"}, "/app is the target of another config"},
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "source=db", "busybox:latest"}, "secret \"db\" does not exist"},
		{[]string{"config", "rm", "app"}, "config app is in use by services web, worker: remove them or run `berth service update --config-rm app SERVICE` first"},
		{[]string{"config", "rm", "nope"}, "nope"},
	} {
		if _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	// --config-add replaces the config at the same target; --config-rm
	// drops one, by name or by target.
	if _, err := run("service", "update", "-d", "--config-rm", "app", "--config-add", "source=app,target=/etc/log.conf", "web"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("service", "inspect", "--format", refs, "web"); err != nil || out != "app@/etc/log.conf:0:0:292 \n" {
		t.Fatalf("web's configs after update: %v %q", err, out)
	}
	if _, err := run("config", "rm", "log"); err != nil {
		t.Fatalf("rm of a config no service uses: %v", err)
	}
	if _, err := run("service", "update", "-d", "--config-rm", "/etc/app.conf", "worker"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("config", "rm", "app"); err == nil || !strings.Contains(err.Error(), "in use by service web:") {
		t.Fatalf("rm of a config one service uses: %v", err)
	}
	if out, _ := run("config", "ls", "-q"); len(strings.Fields(out)) != 1 {
		t.Fatalf("config ls -q after rm:\n%s", out)
	}
}

// TestConfigLsPages: configs near the size limit, more of them than one
// page of a list holds, are all listed (the CLI reads every page), and
// each one's value reads back whole.
func TestConfigLsPages(t *testing.T) {
	bundle := startManager(t)
	big := strings.Repeat("x", 1000*1024-1)
	for _, name := range []string{"a", "b", "c"} {
		var err error
		await.True(t, 20*time.Second, func() bool {
			_, err = berthStdin(t, name+big, "--tls-dir", bundle, "config", "create", name, "-")
			return err == nil || !strings.Contains(err.Error(), "cannot reach")
		}, "config create")
		if err != nil {
			t.Fatalf("config create %s of 1000 KiB: %v", name, err)
		}
	}
	if out, err := berth(t, "--tls-dir", bundle, "config", "ls", "--format", "{{.Name}}"); err != nil || out != "a\nb\nc\n" {
		t.Fatalf("config ls over pages: %v %q", err, out)
	}
	if out, err := berth(t, "--tls-dir", bundle, "config", "inspect", "--format", "{{len .Spec.Data}}", "c"); err != nil || out != fmt.Sprint(len("c"+big))+"\n" {
		t.Fatalf("config inspect of 1000 KiB: %v %q", err, out)
	}
}
