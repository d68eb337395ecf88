package testimage

import (
	"archive/tar"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pull fetches ref from the fixture's registry over plain HTTP.
func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("parse %s: %v", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// layerFiles reads the single layer of img into a map from path to header
// and contents.
func layerFiles(t *testing.T, img v1.Image) map[string]fileInfo {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: got %d, err %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatalf("open layer: %v", err)
	}
	defer rc.Close()
	files := map[string]fileInfo{}
	tr := tar.NewReader(rc)
	var last string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		if hdr.Name <= last {
			t.Errorf("layer entries not sorted: %q after %q", hdr.Name, last)
		}
		last = hdr.Name
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d; want %v, root", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, epoch)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		files[strings.TrimSuffix(hdr.Name, "/")] = fileInfo{hdr: hdr, data: data}
	}
}

type fileInfo struct {
	hdr  *tar.Header
	data []byte
}

// checkPulled pulls want by digest and by tag and checks both resolve to
// the pushed manifest.
func checkPulled(t *testing.T, want Image) v1.Image {
	t.Helper()
	img := pull(t, want.ByDigest)
	got, err := img.Digest()
	if err != nil || got.String() != want.Digest {
		t.Fatalf("pull %s: digest %v (err %v), want %s", want.ByDigest, got, err, want.Digest)
	}
	byTag, err := pull(t, want.Tag).Digest()
	if err != nil || byTag.String() != want.Digest {
		t.Fatalf("pull %s: digest %v (err %v), want %s", want.Tag, byTag, err, want.Digest)
	}
	mt, err := img.MediaType()
	if err != nil || !strings.Contains(string(mt), "oci") {
		t.Errorf("%s: media type %q (err %v), want an OCI manifest", want.ByDigest, mt, err)
	}
	return img
}

func configOf(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
	}
	return cf
}

func TestFixtureServesBusyboxByDigest(t *testing.T) {
	f := Serve(t)
	t.Logf("busybox:latest %s", f.Busybox.Digest)
	if !strings.HasPrefix(f.Busybox.Tag, f.Registry.Addr()+"/busybox:latest") {
		t.Errorf("tag ref %q, want %s/busybox:latest", f.Busybox.Tag, f.Registry.Addr())
	}
	img := checkPulled(t, f.Busybox)
	cf := configOf(t, img)
	if !slices.Equal(cf.Config.Cmd, []string{"sh"}) || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("cmd %q entrypoint %q, want cmd [sh] and no entrypoint", cf.Config.Cmd, cf.Config.Entrypoint)
	}
	if !slices.Contains(cf.Config.Env, defaultPath) {
		t.Errorf("env %q lacks %s", cf.Config.Env, defaultPath)
	}

	files := layerFiles(t, img)
	bb, ok := files["bin/busybox"]
	if !ok || bb.hdr.Typeflag != tar.TypeReg || bb.hdr.Mode != 0o755 || len(bb.data) == 0 {
		t.Fatalf("bin/busybox: %+v, want an executable regular file", bb.hdr)
	}
	for _, applet := range []string{"bin/sh", "bin/sleep", "usr/bin/wget", "usr/bin/nslookup", "usr/sbin/httpd", "bin/hostname", "usr/bin/env"} {
		f, ok := files[applet]
		if !ok || f.hdr.Typeflag != tar.TypeSymlink || f.hdr.Linkname != "/bin/busybox" {
			t.Errorf("%s: %+v, want a symlink to /bin/busybox", applet, f.hdr)
		}
	}
	if tmp := files["tmp"]; tmp.hdr == nil || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode != 0o1777 {
		t.Errorf("tmp: %+v, want a directory with mode 1777", tmp.hdr)
	}
	for p, want := range map[string]string{"etc/passwd": "nobody:x:65534:65534:", "etc/group": "nobody:x:65534:"} {
		if !strings.Contains(string(files[p].data), want) || !strings.HasPrefix(string(files[p].data), "root:x:0:") {
			t.Errorf("%s = %q, want root and %q", p, files[p].data, want)
		}
	}
}

func TestFixtureServesAppVersionsByDigest(t *testing.T) {
	f := Serve(t)
	t.Logf("app:v1 %s, app:v2 %s", f.AppV1.Digest, f.AppV2.Digest)
	if f.AppV1.Digest == f.AppV2.Digest {
		t.Fatalf("app:v1 and app:v2 share digest %s", f.AppV1.Digest)
	}
	for _, c := range []struct {
		img     Image
		version string
	}{{f.AppV1, "v1"}, {f.AppV2, "v2"}} {
		img := checkPulled(t, c.img)
		cf := configOf(t, img)
		if !slices.Equal(cf.Config.Entrypoint, []string{"/app"}) || len(cf.Config.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q cmd %q, want [/app] and no cmd", c.img.Tag, cf.Config.Entrypoint, cf.Config.Cmd)
		}
		for _, env := range []string{"APP_VERSION=" + c.version, "PORT=8080", defaultPath} {
			if !slices.Contains(cf.Config.Env, env) {
				t.Errorf("%s: env %q lacks %s", c.img.Tag, cf.Config.Env, env)
			}
		}
		files := layerFiles(t, img)
		if app := files["app"]; app.hdr == nil || app.hdr.Mode != 0o755 || !strings.HasPrefix(string(app.data), "\x7fELF") {
			t.Errorf("%s: /app is not an executable ELF file", c.img.Tag)
		}
	}
}

func TestImagesAreDeterministic(t *testing.T) {
	// build* bypass the per-process cache, so each call builds afresh.
	for name, build := range map[string]func() (v1.Image, error){
		"busybox": func() (v1.Image, error) { return buildBusybox(BusyboxPath) },
		"app":     func() (v1.Image, error) { return buildAppImage(t.Context(), "v1") },
	} {
		var digests []v1.Hash
		for range 2 {
			img, err := build()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			d, err := img.Digest()
			if err != nil {
				t.Fatalf("%s: digest: %v", name, err)
			}
			digests = append(digests, d)
		}
		if digests[0] != digests[1] {
			t.Errorf("%s: two builds give digests %s and %s", name, digests[0], digests[1])
		}
	}
}

func TestPushRejectsFullReference(t *testing.T) {
	r, err := StartRegistry(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{r.Addr() + "/busybox:latest", "busybox@sha256:" + strings.Repeat("0", 64), "Upper:tag"} {
		if _, _, err := r.Push(t.Context(), bad, img); err == nil {
			t.Errorf("Push(%q) succeeded, want an error", bad)
		}
	}
}
