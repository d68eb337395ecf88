package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every entry and the creation time of
// every image, so that digests do not depend on when an image was built.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is one file-system object in a layer.
type entry struct {
	path   string // relative, no leading slash: "bin/sh"
	mode   int64  // permission bits, including sticky/setuid
	typ    byte   // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	data   []byte // contents of a regular file
	target string // target of a symlink
}

func dir(p string, mode int64) entry { return entry{path: p, mode: mode, typ: tar.TypeDir} }

func file(p string, mode int64, data []byte) entry {
	return entry{path: p, mode: mode, typ: tar.TypeReg, data: data}
}

func symlink(p, target string) entry {
	return entry{path: p, mode: 0o777, typ: tar.TypeSymlink, target: target}
}

// layerTar writes entries as a tar stream in a fixed order: sorted by path,
// so a directory always comes before what it holds. Missing parent
// directories are added with mode 0755. All owners are root and all times
// are epoch. Two calls with the same entries give the same bytes.
func layerTar(entries []entry) ([]byte, error) {
	all := withParents(entries)
	sort.Slice(all, func(i, j int) bool { return all[i].path < all[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, e := range all {
		if i > 0 && all[i-1].path == e.path {
			return nil, fmt.Errorf("layer entry %s: duplicate path", e.path)
		}
		if err := writeEntry(tw, e); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// withParents returns entries plus a directory entry for every parent that
// is not listed explicitly.
func withParents(entries []entry) []entry {
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		have[e.path] = true
	}
	all := append([]entry(nil), entries...)
	for _, e := range entries {
		for p := path.Dir(e.path); p != "." && !have[p]; p = path.Dir(p) {
			have[p] = true
			all = append(all, dir(p, 0o755))
		}
	}
	return all
}

func writeEntry(tw *tar.Writer, e entry) error {
	hdr := &tar.Header{
		Typeflag: e.typ,
		Name:     e.path,
		Mode:     e.mode,
		ModTime:  epoch,
		Uname:    "root",
		Gname:    "root",
	}
	switch e.typ {
	case tar.TypeDir:
		hdr.Name = strings.TrimSuffix(e.path, "/") + "/"
	case tar.TypeReg:
		hdr.Size = int64(len(e.data))
	case tar.TypeSymlink:
		hdr.Linkname = e.target
	default:
		return fmt.Errorf("unsupported entry type %q", e.typ)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if e.typ == tar.TypeReg {
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return nil
}

// newLayer builds a gzip-compressed OCI layer from entries. The layer keeps
// its compressed bytes after the first read, so pushing it again is cheap.
func newLayer(entries []entry) (v1.Layer, error) {
	raw, err := layerTar(entries)
	if err != nil {
		return nil, err
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	l, err := tarball.LayerFromOpener(opener, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	return l, nil
}
