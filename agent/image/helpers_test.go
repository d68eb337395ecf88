package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

const testPrefix = "berth-test-image-"

var sweepOnce sync.Once

// sweepStale unmounts and removes what crashed runs of these tests left
// behind: test dirs whose owner (the pid file beside the root) is gone.
// Dirs of a run still going, in another process, are left alone.
func sweepStale(t testing.TB) {
	sweepOnce.Do(func() {
		mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
			return !strings.Contains(m.Mountpoint, testPrefix) && !strings.Contains(m.Source, testPrefix), false
		})
		if err != nil {
			t.Logf("read mountinfo: %v", err)
			return
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			if top := testDirOf(mounts[i].Mountpoint); top != "" && !ownerAlive(top) {
				t.Logf("unmounting stale test mount %s", mounts[i].Mountpoint)
				unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH)
			}
		}
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), testPrefix+"*"))
		for _, d := range dirs {
			if !ownerAlive(d) && len(mountsUnder(t, d)) == 0 {
				os.RemoveAll(d)
			}
		}
	})
}

// testDirOf returns the test dir (TMP/berth-test-image-N) a path is in.
func testDirOf(p string) string {
	i := strings.Index(p, testPrefix)
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(p[i:], '/')
	if j < 0 {
		return p
	}
	return p[:i+j]
}

// ownerAlive reports whether the test process that made dir still runs.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && pid > 0 && unix.Kill(pid, 0) == nil
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts, mknod, trusted xattrs); run as root")
	}
}

// testRoot makes a temp dir holding a pid file and a store root, and
// removes it, and every mount under it, at the end of the test.
func testRoot(t testing.TB) string {
	t.Helper()
	sweepStale(t)
	dir, err := os.MkdirTemp("", testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test root: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func unmountUnder(t testing.TB, dir string) {
	mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mounts[i].Mountpoint, err)
		}
	}
}

// mountsUnder lists mount points under dir.
func mountsUnder(t testing.TB, dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newStore(t testing.TB, root string, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{Root: root, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testRegistry is an in-process registry on 127.0.0.1 that counts requests
// and can require basic auth or corrupt one blob.
type testRegistry struct {
	srv  *httptest.Server
	Host string
	h    http.Handler

	mu     sync.Mutex
	counts map[string]int // "METHOD path" → requests
	tamper string         // blob digest to corrupt
	stall  string         // blob digest to send half of, then hang
	user   string         // basic auth user, "" for none
	pass   string
}

func newRegistry(t testing.TB) *testRegistry {
	r := &testRegistry{h: registry.New(registry.Logger(log.New(io.Discard, "", 0))), counts: map[string]int{}}
	r.srv = httptest.NewServer(r)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.counts[req.Method+" "+req.URL.Path]++
	user, pass, tamper, stall := r.user, r.pass, r.tamper, r.stall
	r.mu.Unlock()
	if user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	if stall != "" && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+stall) {
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		w.Header().Set("Content-Length", fmt.Sprint(rec.Body.Len()))
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
		w.(http.Flusher).Flush()
		<-req.Context().Done()
		return
	}
	if tamper != "" && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+tamper) {
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		body[len(body)/2] ^= 0xff
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
		return
	}
	r.h.ServeHTTP(w, req)
}

// requests counts requests whose "METHOD path" contains sub.
func (r *testRegistry) requests(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, c := range r.counts {
		if strings.Contains(k, sub) {
			n += c
		}
	}
	return n
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int{}
}

// push builds an image from tar layers and pushes it as repoTag.
func (r *testRegistry) push(t testing.TB, repoTag string, layers ...[]byte) v1.Image {
	t.Helper()
	img := buildImage(t, layers...)
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	auth := authn.Authenticator(authn.Anonymous)
	if r.user != "" {
		auth = &authn.Basic{Username: r.user, Password: r.pass}
	}
	r.mu.Unlock()
	if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func buildImage(t testing.TB, layers ...[]byte) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, b := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/bin/app"}
	cf.Config.Cmd = []string{"--serve"}
	cf.Config.Env = []string{"PATH=/bin", "MODE=test"}
	cf.Config.WorkingDir = "/srv"
	cf.Config.User = "1000:1000"
	cf.Config.StopSignal = "SIGINT"
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// entry is one tar entry of a hand-made layer.
type entry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	uid  int
	gid  int
	dev  int64 // major for device nodes
}

func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}
func symlink(name, target string) entry  { return entry{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) entry { return entry{name: name, typ: tar.TypeLink, link: target} }
func whiteout(name string) entry         { return file(name, "") }
func chardev(name string, major int64) entry {
	return entry{name: name, typ: tar.TypeChar, mode: 0o666, dev: major}
}

var testMtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func tarLayer(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, Size: int64(len(e.body)), ModTime: testMtime, Devmajor: e.dev, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dirEntries lists the names in dir (none if it does not exist).
func dirEntries(t testing.TB, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
