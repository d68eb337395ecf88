package flagparse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"64M": 64 << 20, "1g": 1 << 30, "512": 512, "1.5K": 1536, "": 0, "10MB": 10 << 20} {
		if got, err := Bytes("limit-memory", in); err != nil || got != want {
			t.Errorf("Bytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := Bytes("limit-memory", "lots"); err == nil || !strings.Contains(err.Error(), "--limit-memory") {
		t.Errorf("bad size: %v", err)
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]*pb.PortConfig{
		"8080:80":                        {PublishedPort: 8080, TargetPort: 80},
		"53:53/udp":                      {PublishedPort: 53, TargetPort: 53, Protocol: pb.PortConfig_PROTOCOL_UDP},
		"80":                             {TargetPort: 80},
		"published=1,target=2,mode=host": {PublishedPort: 1, TargetPort: 2, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST},
	} {
		got, err := Port(in)
		if err != nil || got.String() != want.String() {
			t.Errorf("Port(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"a:b", "80/sctp", "target=x", "foo=1"} {
		if _, err := Port(bad); err == nil {
			t.Errorf("Port(%q) accepted", bad)
		}
	}
}

func TestSecurityOptsReadsProfileFiles(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "p.json"), filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("defaultAction: allow"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := SecurityOpts([]string{"seccomp=unconfined", "seccomp=" + good, "apparmor=x"})
	want := []string{"seccomp=unconfined", `seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, "apparmor=x"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("SecurityOpts = %q, %v; want %q", got, err, want)
	}
	for file, msg := range map[string]string{bad: "not JSON", filepath.Join(dir, "none.json"): "read the seccomp profile"} {
		if _, err := SecurityOpts([]string{"seccomp=" + file}); err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "--security-opt") {
			t.Errorf("seccomp=%s: %v, want an error saying %q", file, err, msg)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]*pb.NetworkAttachment{
		"back":                          {Target: "back"},
		"name=back,alias=db,alias=main": {Target: "back", Aliases: []string{"db", "main"}},
		"target=back":                   {Target: "back"},
	} {
		got, err := Network(in)
		if err != nil || got.GetTarget() != want.GetTarget() || strings.Join(got.GetAliases(), ",") != strings.Join(want.GetAliases(), ",") {
			t.Errorf("Network(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"alias=db": "no network name", "name=back,size=3": `unknown option "size"`} {
		if _, err := Network(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Network(%q) = %v; want an error mentioning %q", in, err, want)
		}
	}
}

func TestCgroupParent(t *testing.T) {
	for _, ok := range []string{"", "/berth", "berth", "/berth-test-1/TestX", "a/b/"} {
		if err := CgroupParent(ok); err != nil {
			t.Errorf("CgroupParent(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"/", "..", "/a/../b", "a//b", "./a"} {
		if err := CgroupParent(bad); err == nil || !strings.Contains(err.Error(), "--cgroup-parent") {
			t.Errorf("CgroupParent(%q) = %v, want an error naming the flag", bad, err)
		}
	}
}
