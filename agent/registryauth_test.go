package agent

import (
	"bytes"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"berth/internal/await"
	"berth/internal/testimage"
	pb "berth/proto/berth/v1"
)

// privateRegistry serves testimage's busybox as REGISTRY/private/busybox
// to user:pass only, as agent/image's TestPullBasicAuth does.
func privateRegistry(t *testing.T, user, pass string) (host, ref string) {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ref = host + "/private/busybox:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return host, ref
}

// syncBuffer is a log sink the agent's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAgentPullsWithTaskCredentials: a task whose spec carries registry
// credentials pulls from a registry that requires them and runs; without
// them, or with a wrong password, it is rejected with a message that says
// what to do. The password appears in no log, status or file of the agent.
func TestAgentPullsWithTaskCredentials(t *testing.T) {
	needRoot(t)
	const user, pass = "alice", "agent-side-pa55word"
	host, ref := privateRegistry(t, user, pass)
	c := newFakeCluster(t)
	m := startFakeManager(t, c, "mgr1")
	dir := testDir(t)
	var logs syncBuffer
	a := startAgentLogging(t, dir, []string{m.addr}, c.token.String(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	await.True(t, 10*time.Second, func() bool { return a.NodeID() != "" }, "agent joins")

	withAuth := func(id, password string) *pb.Task {
		tk := busyTask(id, ref, pb.TaskState_TASK_STATE_RUNNING, "true")
		tk.Spec.Container.RegistryAuth = &pb.RegistryAuth{Server: host, Username: user, Password: password}
		return tk
	}
	for _, tc := range []struct {
		name string
		task *pb.Task
		want []string
	}{
		{"without credentials", busyTask("anon", ref, pb.TaskState_TASK_STATE_RUNNING, "true"),
			[]string{"refused access", "no registry credentials", "--registry-auth"}},
		{"wrong password", withAuth("wrong", "guess"), []string{"refused access", `user "alice" were refused`, "--registry-auth"}},
		{"no password from the manager", withAuth("nopass", ""), []string{"without a password", "--registry-auth"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.setTask(tc.task)
			st := waitReported(t, c, tc.task.GetId(), pb.TaskState_TASK_STATE_REJECTED)
			for _, w := range tc.want {
				if !strings.Contains(st.GetErr(), w) {
					t.Errorf("rejected with %q; want it to say %q", st.GetErr(), w)
				}
			}
		})
	}

	c.setTask(withAuth("private", pass))
	waitReported(t, c, "private", pb.TaskState_TASK_STATE_COMPLETE)

	if strings.Contains(logs.String(), pass) {
		t.Error("the agent logged the registry password")
	}
	for _, id := range []string{"anon", "wrong", "nopass", "private"} {
		if strings.Contains(reportList{c, id}.String(), pass) {
			t.Errorf("task %s's status carries the registry password", id)
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pass)) {
				t.Errorf("the agent wrote the registry password to %s", p)
			}
		}
		return nil
	})
}
