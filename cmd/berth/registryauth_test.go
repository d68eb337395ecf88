package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// dockerConfig writes a docker config.json whose "auths" map each key to
// base64 "auth" of its user:password, and points the environment at it
// alone (no ~/.docker, no podman auth files).
func dockerConfig(t *testing.T, auths map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for _, env := range []string{"HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"} {
		t.Setenv(env, t.TempDir())
	}
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("DOCKER_CONFIG", dir)
	entries := map[string]map[string]string{}
	for key, userPass := range auths {
		entries[key] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(userPass))}
	}
	b, err := json.Marshal(map[string]any{"auths": entries})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// applyAuth runs the registry flags over a container spec for image.
func applyAuth(t *testing.T, c *pb.ContainerSpec, stdin string, args ...string) (note string, err error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	var f registryAuthFlags
	f.register(fs, true)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := f.readPassword(fs, strings.NewReader(stdin)); err != nil {
		return "", err
	}
	var out bytes.Buffer
	err = f.apply(fs, c, authn.DefaultKeychain, &out)
	return out.String(), err
}

func TestRegistryAuthFromDockerConfig(t *testing.T) {
	dockerConfig(t, map[string]string{
		"reg.example.com:5000":        "alice:s3cret",
		"https://index.docker.io/v1/": "hubuser:hubpass",
		"https://other.example.com":   "bob:with:colon",
	})
	for _, tc := range []struct {
		image string
		want  *pb.RegistryAuth
	}{
		{"reg.example.com:5000/team/app:v1", &pb.RegistryAuth{Server: "reg.example.com:5000", Username: "alice", Password: "s3cret"}},
		{"busybox", &pb.RegistryAuth{Server: "index.docker.io", Username: "hubuser", Password: "hubpass"}},
		{"other.example.com/x@sha256:" + strings.Repeat("a", 64), &pb.RegistryAuth{Server: "other.example.com", Username: "bob", Password: "with:colon"}},
	} {
		c := &pb.ContainerSpec{Image: tc.image}
		if _, err := applyAuth(t, c, "", "--registry-auth"); err != nil {
			t.Errorf("%s: %v", tc.image, err)
			continue
		}
		if !proto.Equal(c.GetRegistryAuth(), tc.want) {
			t.Errorf("%s: credentials %v, want %v", tc.image, c.GetRegistryAuth(), tc.want)
		}
	}

	_, err := applyAuth(t, &pb.ContainerSpec{Image: "ghcr.io/team/app:v1"}, "", "--registry-auth")
	if err == nil || !strings.Contains(err.Error(), "--registry-auth: no credentials for registry ghcr.io") ||
		!strings.Contains(err.Error(), "docker login ghcr.io") || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("no entry for the registry: %v", err)
	}
}

func TestRegistryAuthBrokenDockerConfig(t *testing.T) {
	dockerConfig(t, nil)
	os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(`{"auths": {"reg.example.com": {"auth": "%%%"}}}`), 0o600)
	_, err := applyAuth(t, &pb.ContainerSpec{Image: "reg.example.com/app"}, "", "--registry-auth")
	if err == nil || !strings.Contains(err.Error(), "--registry-auth") || !strings.Contains(err.Error(), "reg.example.com") {
		t.Fatalf("unreadable auth entry: %v", err)
	}
}

func TestRegistryAuthFromStdinAndUpdates(t *testing.T) {
	dockerConfig(t, nil)
	c := &pb.ContainerSpec{Image: "reg.example.com:5000/app:v1"}
	if _, err := applyAuth(t, c, "pa55\n", "--registry-user", "carol", "--registry-password-stdin"); err != nil {
		t.Fatal(err)
	}
	want := &pb.RegistryAuth{Server: "reg.example.com:5000", Username: "carol", Password: "pa55"}
	if !proto.Equal(c.GetRegistryAuth(), want) {
		t.Fatalf("credentials %v, want %v", c.GetRegistryAuth(), want)
	}

	// An update that does not mention credentials keeps them, as read back
	// (server and user; the manager keeps the password).
	kept := &pb.ContainerSpec{Image: "reg.example.com:5000/app:v2", RegistryAuth: &pb.RegistryAuth{Server: "reg.example.com:5000", Username: "carol"}}
	if _, err := applyAuth(t, kept, ""); err != nil || kept.GetRegistryAuth().GetUsername() != "carol" {
		t.Fatalf("update without credential flags: %v, %v", kept.GetRegistryAuth(), err)
	}
	// An image from another registry drops them, saying so.
	moved := proto.Clone(kept).(*pb.ContainerSpec)
	moved.Image = "ghcr.io/team/app:v2"
	note, err := applyAuth(t, moved, "")
	if err != nil || moved.GetRegistryAuth() != nil || !strings.Contains(note, "reg.example.com:5000") || !strings.Contains(note, "--registry-auth") {
		t.Fatalf("image moved to another registry: %v, note %q, %v", moved.GetRegistryAuth(), note, err)
	}
	// --registry-auth=false removes them.
	removed := proto.Clone(kept).(*pb.ContainerSpec)
	if _, err := applyAuth(t, removed, "", "--registry-auth=false"); err != nil || removed.GetRegistryAuth() != nil {
		t.Fatalf("--registry-auth=false: %v, %v", removed.GetRegistryAuth(), err)
	}
}

// TestRegistryAuthFlagErrors: wrong combinations fail before any request,
// naming the flag.
func TestRegistryAuthFlagErrors(t *testing.T) {
	dockerConfig(t, nil)
	noManager := []string{"--tls-dir", filepath.Join(t.TempDir(), "none"), "--host", "127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "create", "--registry-auth", "reg.example.com/app:v1"}, "--registry-auth: no credentials for registry reg.example.com"},
		{[]string{"service", "create", "--registry-user", "u", "reg.example.com/app:v1"}, "--registry-user needs --registry-password-stdin"},
		{[]string{"service", "create", "--registry-password-stdin", "reg.example.com/app:v1"}, "--registry-password-stdin needs --registry-user"},
		{[]string{"service", "create", "--registry-auth", "--registry-user", "u", "--registry-password-stdin", "reg.example.com/app:v1"}, "use one"},
		{[]string{"service", "create", "--registry-user", "u", "--registry-password-stdin", "reg.example.com/app:v1"}, "stdin is empty"},
		{[]string{"service", "update", "--rollback", "--registry-auth", "web"}, "--rollback"},
	} {
		_, err := berthIn(t, "", append(noManager, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestServiceRegistryAuthWithManager: credentials given to create show up
// in inspect as server and user only, survive an update that does not
// mention them, and go with --registry-auth=false.
func TestServiceRegistryAuthWithManager(t *testing.T) {
	dir := startManager(t)
	dockerConfig(t, nil)
	const pass = "cli-side-secret-9"
	await.NoError(t, 20*time.Second, func() error {
		_, err := berthIn(t, "", "--tls-dir", dir, "service", "ls")
		return err
	}, "the manager serves the Control API")
	if _, err := berthIn(t, pass+"\n", "--tls-dir", dir, "service", "create", "-d", "--name", "private",
		"--registry-user", "dave", "--registry-password-stdin", "reg.example.com:5000/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	// inspect returns the service as `berth service inspect` prints it.
	inspect := func() *pb.Service {
		t.Helper()
		out, err := berthIn(t, "", "--tls-dir", dir, "service", "inspect", "private")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, pass) || strings.Contains(out, "sealed_password") {
			t.Fatalf("inspect shows the password:\n%s", out)
		}
		var list []json.RawMessage
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
			t.Fatalf("inspect printed %q: %v", out, err)
		}
		var svc pb.Service
		if err := protojson.Unmarshal(list[0], &svc); err != nil {
			t.Fatal(err)
		}
		return &svc
	}
	auth := func(s *pb.Service) *pb.RegistryAuth { return s.GetSpec().GetTask().GetContainer().GetRegistryAuth() }
	want := &pb.RegistryAuth{Server: "reg.example.com:5000", Username: "dave"}
	if got := auth(inspect()); !proto.Equal(got, want) {
		t.Fatalf("inspect shows credentials %v, want %v", got, want)
	}
	if _, err := berthIn(t, "", "--tls-dir", dir, "service", "update", "-d", "--replicas", "2", "private"); err != nil {
		t.Fatalf("update without credentials: %v", err)
	}
	if got := auth(inspect()); !proto.Equal(got, want) {
		t.Fatalf("an update without credential flags left %v, want %v", got, want)
	}
	if _, err := berthIn(t, "", "--tls-dir", dir, "service", "update", "-d", "--registry-auth=false", "private"); err != nil {
		t.Fatalf("update --registry-auth=false: %v", err)
	}
	if got := auth(inspect()); got != nil {
		t.Fatalf("--registry-auth=false kept the credentials %v", got)
	}
}

// berthIn runs the CLI with stdin and args and returns what it printed.
func berthIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}
