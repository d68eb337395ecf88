package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestSecretCommands: secret create (from a file and from stdin), ls,
// inspect and rm against a real manager; services name secrets with
// --secret in both forms and drop them with --secret-rm; rm refuses a
// secret in use, naming every service that uses it. No output, and no file
// of the manager's data dir, holds a secret's value.
func TestSecretCommands(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	await.NoError(t, 20*time.Second, func() error { _, err := run("secret", "ls"); return err }, "berth secret ls")

	dbValue := fmt.Sprintf("db-pl41n-%d-value", os.Getpid())
	apiValue := fmt.Sprintf("api-pl41n-%d-value", os.Getpid())
	file := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(file, []byte(dbValue), 0o600); err != nil {
		t.Fatal(err)
	}
	// The label is kept in clear: finding it in the data dir shows the
	// search below reads the files the secret went to.
	marker := fmt.Sprintf("marker%d", os.Getpid())
	if _, err := run("secret", "create", "--label", "team=a", "--label", "m="+marker, "db", file); err != nil {
		t.Fatal(err)
	}
	if _, err := berthStdin(t, apiValue, "--tls-dir", bundle, "secret", "create", "api", "-"); err != nil {
		t.Fatalf("secret create from stdin: %v", err)
	}
	if _, err := run("secret", "create", "db", file); err == nil || !strings.Contains(err.Error(), "db") {
		t.Fatalf("a second secret named db: %v", err)
	}
	if _, err := run("secret", "create", "empty", os.DevNull); err == nil || !strings.Contains(err.Error(), "secret is empty") {
		t.Fatalf("an empty secret: %v", err)
	}

	outputs := map[string]string{}
	for _, args := range [][]string{{"secret", "ls"}, {"secret", "ls", "--format", "json"}, {"secret", "ls", "-q"}, {"secret", "inspect", "db", "api"}} {
		out, err := run(args...)
		if err != nil {
			t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
		}
		outputs[strings.Join(args, " ")] = out
	}
	if out := outputs["secret ls"]; !strings.Contains(out, "db") || !strings.Contains(out, "api") || !strings.Contains(out, "team=a") {
		t.Errorf("secret ls:\n%s", out)
	}
	var listed []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(outputs["secret ls --format json"]), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("secret ls --format json: %v\n%s", err, outputs["secret ls --format json"])
	}
	if ids := strings.Fields(outputs["secret ls -q"]); len(ids) != 2 || (ids[0] != listed[0].ID && ids[0] != listed[1].ID) {
		t.Errorf("secret ls -q printed %q, want the two IDs", ids)
	}
	var inspected []*pb.Secret
	for _, raw := range jsonArray(t, outputs["secret inspect db api"]) {
		var s pb.Secret
		if err := protojson.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		inspected = append(inspected, &s)
	}
	if len(inspected) != 2 || inspected[0].GetSpec().GetAnnotations().GetName() != "db" || len(inspected[0].GetSpec().GetData()) != 0 {
		t.Errorf("secret inspect db api:\n%s", outputs["secret inspect db api"])
	}
	for cmd, out := range outputs {
		if strings.Contains(out, dbValue) || strings.Contains(out, apiValue) {
			t.Errorf("berth %s shows a secret's value:\n%s", cmd, out)
		}
	}

	// Services name secrets, in the short and the long form.
	if _, err := run("service", "create", "-d", "--name", "web", "--secret", "db",
		"--secret", "source=api,target=keys/api,uid=1000,gid=1001,mode=0400", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("service", "create", "-d", "--name", "worker", "--secret", "db", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	refs := serviceSecrets(t, run, "web")
	if len(refs) != 2 || refs[0].GetSecretName() != "db" || refs[0].GetFileName() != "db" || refs[0].GetMode() != 0o444 ||
		refs[1].GetSecretName() != "api" || refs[1].GetFileName() != "keys/api" || refs[1].GetUid() != 1000 || refs[1].GetGid() != 1001 || refs[1].GetMode() != 0o400 ||
		refs[1].GetSecretId() != inspected[1].GetId() {
		t.Fatalf("web's secrets: %v", refs)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "nope", "busybox:latest"}, "secret \"nope\" does not exist; create it with `berth secret create nope FILE`"},
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "source=db,mode=01777", "busybox:latest"}, "mode 01777 has bits beyond 0777"},
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "source=db,target=../etc/passwd", "busybox:latest"}, "contains '..'"},
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "source=db,colour=red", "busybox:latest"}, `unknown key "colour"`},
		{[]string{"service", "create", "-d", "--name", "x", "--secret", "db", "--secret", "source=api,target=db", "busybox:latest"}, "is the target of another secret"},
		{[]string{"secret", "rm", "db"}, "secret db is in use by services web, worker"},
		{[]string{"secret", "rm", "nope"}, "nope"},
	} {
		if _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	// --secret-add replaces the secret at the same target; --secret-rm drops one.
	if _, err := run("service", "update", "-d", "--secret-rm", "db", "--secret-add", "source=db,target=keys/api,mode=0440", "web"); err != nil {
		t.Fatal(err)
	}
	if refs := serviceSecrets(t, run, "web"); len(refs) != 1 || refs[0].GetSecretName() != "db" || refs[0].GetFileName() != "keys/api" || refs[0].GetMode() != 0o440 {
		t.Fatalf("web's secrets after update: %v", refs)
	}
	if _, err := run("service", "update", "-d", "--secret-rm", "/run/secrets/db", "worker"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("secret", "rm", "api"); err != nil {
		t.Fatalf("rm of a secret no service uses: %v", err)
	}
	if _, err := run("secret", "rm", "db"); err == nil || !strings.Contains(err.Error(), "in use by service web:") {
		t.Fatalf("rm of a secret one service uses: %v", err)
	}
	if out, _ := run("secret", "ls"); strings.Contains(out, "api") {
		t.Fatalf("a removed secret is still listed:\n%s", out)
	}

	// The Raft log (and any snapshot) holds the values sealed only.
	dataDir := filepath.Dir(bundle)
	seen := false
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(dbValue)) || bytes.Contains(b, []byte(apiValue)) {
			t.Errorf("%s holds a secret's value in clear", p)
		}
		seen = seen || bytes.Contains(b, []byte(marker))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Fatalf("no file of %s holds the secret's label %q: the search missed the Raft log", dataDir, marker)
	}
}

// berthStdin runs the CLI with stdin.
func berthStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func jsonArray(t *testing.T, s string) []json.RawMessage {
	t.Helper()
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	return list
}

// serviceSecrets reads a service's secret references with service inspect.
func serviceSecrets(t *testing.T, run func(...string) (string, error), name string) []*pb.SecretReference {
	t.Helper()
	out, err := run("service", "inspect", name)
	if err != nil {
		t.Fatal(err)
	}
	list := jsonArray(t, out)
	if len(list) != 1 {
		t.Fatalf("service inspect %s:\n%s", name, out)
	}
	var svc pb.Service
	if err := protojson.Unmarshal(list[0], &svc); err != nil {
		t.Fatal(err)
	}
	return svc.GetSpec().GetTask().GetContainer().GetSecrets()
}
