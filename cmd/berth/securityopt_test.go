package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestServiceSecurityOptWithManager: --security-opt seccomp=FILE sends the
// profile's content, which the manager checks; options berth does not
// apply are refused, on create and on update.
func TestServiceSecurityOptWithManager(t *testing.T) {
	dir := startManager(t)
	await.NoError(t, 20*time.Second, func() error {
		_, err := berth(t, "--tls-dir", dir, "service", "ls")
		return err
	}, "the manager serves the Control API")
	files := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("no-mkdir.json", "{\n \"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\"}]\n}\n")
	bad := write("bad.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]}`)

	if _, err := berth(t, "--tls-dir", dir, "service", "create", "-d", "--name", "filtered", "--security-opt", "seccomp="+good, "reg.example.com:5000/app:v1"); err != nil {
		t.Fatal(err)
	}
	opts := func() string {
		t.Helper()
		out, err := berth(t, "--tls-dir", dir, "service", "inspect", "filtered")
		var list []json.RawMessage
		if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			t.Fatalf("inspect: %v\n%s", err, out)
		}
		var svc pb.Service
		if err := protojson.Unmarshal(list[0], &svc); err != nil {
			t.Fatal(err)
		}
		return strings.Join(svc.GetSpec().GetTask().GetContainer().GetSecurityOpts(), " ")
	}
	if got := opts(); got != `seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}` {
		t.Fatalf("the spec holds %q, want the profile's content", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "create", "-d", "--name", "badprofile", "--security-opt", "seccomp=" + bad, "reg.example.com:5000/app:v1"},
			"invalid security_opts[0]: seccomp profile: syscalls[0]: args[0]: index 9"},
		{[]string{"service", "create", "-d", "--name", "apparmor", "--security-opt", "apparmor=docker-default", "reg.example.com:5000/app:v1"},
			`invalid security_opts[0]: "apparmor=docker-default" is not supported`},
		{[]string{"service", "update", "--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges=false", "filtered"},
			`invalid security_opts[1]: "no-new-privileges=false" is not supported`},
		{[]string{"service", "update", "--security-opt", "seccomp=" + filepath.Join(files, "missing.json"), "filtered"},
			"read the seccomp profile"},
	} {
		if _, err := berth(t, append([]string{"--tls-dir", dir}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if _, err := berth(t, "--tls-dir", dir, "service", "update", "-d", "--security-opt", "seccomp=unconfined", "filtered"); err != nil {
		t.Fatal(err)
	}
	if got := opts(); got != "seccomp=unconfined" {
		t.Fatalf("after update the spec holds %q, want seccomp=unconfined alone", got)
	}
}
