package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "berth/proto/berth/v1"
)

// TestSecretsStayInTheirDirs: whatever the task says, the agent writes a
// secret or config only under its task's directory in the secrets tmpfs,
// mounts a secret only under /run/secrets in the container, and a config
// only at a clean absolute path. The manager refuses such
// specs too; this is the agent's own line.
func TestSecretsStayInTheirDirs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("writing secrets chowns them: run as root")
	}
	root := t.TempDir()
	st := newFileStore()
	s := &tmpfsFiles{dir: filepath.Join(root, "secrets"), store: st}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st.set(fileKey{id: "sec1"}, []byte("pw"))
	st.set(fileKey{config: true, id: "cfg1"}, []byte("conf"))
	st.set(fileKey{id: "../../../escaped"}, []byte("pw"))

	for _, tc := range []struct {
		task string
		ref  *pb.SecretReference
	}{
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "/run/secrets/../../etc/passwd"}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "/etc/shadow"}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "/run/secrets"}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "/run/secretsX/a"}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: ".."}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "."}},
		{"t1", &pb.SecretReference{SecretId: "sec1", FileName: "a/../../x"}},
		{"t1", &pb.SecretReference{SecretId: "../../../escaped", FileName: "x"}},
		{"../escaped-task", &pb.SecretReference{SecretId: "sec1", FileName: "x"}},
	} {
		mounts, err := s.Mounts(tc.task, &pb.ContainerSpec{Secrets: []*pb.SecretReference{tc.ref}})
		if err == nil {
			t.Errorf("task %q, secret %q at %q: mounted %+v, want a refusal", tc.task, tc.ref.GetSecretId(), tc.ref.GetFileName(), mounts)
		}
	}
	for _, target := range []string{"etc/app.conf", "/../etc/x", "/", "", "/a/../../b"} {
		ref := &pb.ConfigReference{ConfigId: "cfg1", FileName: target}
		if mounts, err := s.Mounts("t1", &pb.ContainerSpec{Configs: []*pb.ConfigReference{ref}}); err == nil {
			t.Errorf("config at %q: mounted %+v, want a refusal", target, mounts)
		}
	}
	if mounts, err := s.Mounts("t1", &pb.ContainerSpec{Configs: []*pb.ConfigReference{{ConfigId: "../x", FileName: "/x"}}}); err == nil {
		t.Errorf("config ID ../x: mounted %+v, want a refusal", mounts)
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.Name() != "secrets" {
			t.Errorf("a secret was written outside the secrets dir: %s", filepath.Join(root, e.Name()))
		}
	}
	ents, _ = os.ReadDir(s.dir)
	for _, e := range ents {
		if !e.IsDir() {
			t.Errorf("a secret was written outside its task's dir: %s", filepath.Join(s.dir, e.Name()))
		}
	}

	for _, tc := range []struct{ name, want string }{
		{"db", "/run/secrets/db"},
		{"/run/secrets/db", "/run/secrets/db"}, // as older managers stored it
		{"conf/db.pem", "/run/secrets/conf/db.pem"},
	} {
		mounts, err := s.Mounts("t2", &pb.ContainerSpec{Secrets: []*pb.SecretReference{{SecretId: "sec1", FileName: tc.name}}})
		if err != nil {
			t.Errorf("secret at %q: %v", tc.name, err)
			continue
		}
		if len(mounts) != 1 || mounts[0].Target != tc.want || !strings.HasPrefix(mounts[0].Source, filepath.Join(s.dir, "t2")+"/") {
			t.Errorf("secret at %q: mounts %+v, want %s from under %s", tc.name, mounts, tc.want, filepath.Join(s.dir, "t2"))
		}
	}
	mounts, err := s.Mounts("t3", &pb.ContainerSpec{Configs: []*pb.ConfigReference{{ConfigId: "cfg1", ConfigName: "app", FileName: "/etc/app.conf"}}})
	if err != nil || len(mounts) != 1 || mounts[0].Target != "/etc/app.conf" || !mounts[0].ReadOnly {
		t.Errorf("config at /etc/app.conf: %+v, %v; want one read-only mount there", mounts, err)
	}
}
