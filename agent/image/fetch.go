package image

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// layerInfo is layers/<hex>/layer.json; it is written before the layer
// directory is renamed into place, so a visible layer always has it.
type layerInfo struct {
	DiffID string `json:"diff_id"`
	Digest string `json:"digest"` // compressed digest it was pulled as
	Size   int64  `json:"size"`   // bytes of regular files
	Link   string `json:"link"`   // name of its short symlink under l/
}

func (s *Store) layerDir(hex string) string { return s.path("layers", hex) }

func (s *Store) readLayerInfo(hex string) (layerInfo, bool) {
	var li layerInfo
	if err := readJSON(filepath.Join(s.layerDir(hex), "layer.json"), &li); err != nil {
		return li, false
	}
	return li, true
}

// fetchImage unpacks every layer of img and records it as ref → digest.
func (s *Store) fetchImage(ctx context.Context, r name.Reference, digest string, img v1.Image, emit func(Progress)) (Image, error) {
	ref, reg := r.Name(), r.Context().RegistryStr()
	mdig, err := img.Digest()
	if err != nil {
		return Image{}, registryErr(err, ref, reg)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, registryErr(err, ref, reg)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, registryErr(err, ref, reg)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return Image{}, newErr(ErrBadLayer, nil, "image %q: config lists %d layers, manifest %d", ref, len(cf.RootFS.DiffIDs), len(layers))
	}
	diffIDs := make([]string, len(layers))
	hexes := make([]string, len(layers))
	for i, d := range cf.RootFS.DiffIDs {
		diffIDs[i], hexes[i] = d.String(), d.Hex
	}
	release := sync.OnceFunc(s.markInflight(hexes))
	defer release()

	sizes := make([]int64, len(layers))
	fresh := make([]bool, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelLayers)
	for i, l := range layers {
		g.Go(func() error {
			var err error
			sizes[i], fresh[i], err = s.fetchLayer(gctx, r, i, len(layers), l, cf.RootFS.DiffIDs[i], emit)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, ErrNoSpace) || errors.Is(err, ErrLayerTooLarge) {
			// The image cannot fit: give back the space of the layers
			// that did (other failures keep them for a retry; GC takes
			// them if none comes).
			release()
			s.discardLayers(pick(hexes, fresh))
		}
		return Image{}, err
	}
	out := Image{Ref: ref, Digest: digest, Manifest: mdig.String(), Config: runConfig(cf), Layers: diffIDs}
	for _, n := range sizes {
		out.Size += n
	}
	return out, s.record(out)
}

// record stores img and points its reference at it.
func (s *Store) record(img Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.meta.Images[img.Digest] = &record{Image: img, Pulled: now, LastUsed: now}
	if !isDigestRef(img.Ref) {
		s.meta.Refs[img.Ref] = img.Digest
	}
	return diskErr(s.saveMeta(), s.root, "record image "+img.Ref)
}

func runConfig(cf *v1.ConfigFile) RunConfig {
	c := cf.Config
	rc := RunConfig{
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir,
		User: c.User, StopSignal: c.StopSignal, Labels: c.Labels,
	}
	if h := c.Healthcheck; h != nil {
		rc.Healthcheck = &HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	}
	for p := range c.ExposedPorts {
		rc.ExposedPorts = append(rc.ExposedPorts, p)
	}
	sort.Strings(rc.ExposedPorts)
	return rc
}

// pick returns the hexes whose flag is set.
func pick(hexes []string, flags []bool) []string {
	var out []string
	for i, h := range hexes {
		if flags[i] {
			out = append(out, h)
		}
	}
	return out
}

// fetchLayer makes sure layer i is unpacked, sharing the work with any other
// pull of the same layer, and returns its unpacked size and whether this
// call's own run put it in place.
func (s *Store) fetchLayer(ctx context.Context, r name.Reference, i, n int, l v1.Layer, diffID v1.Hash, emit func(Progress)) (size int64, fresh bool, err error) {
	dig, err := l.Digest()
	if err != nil {
		return 0, false, registryErr(err, r.Name(), r.Context().RegistryStr())
	}
	total, _ := l.Size()
	base := Progress{Ref: r.Name(), Layer: dig.String(), LayerIndex: i, Layers: n, BytesTotal: total}
	report := func(p Progress) {
		q := base
		q.BytesDone, q.Done, q.Status = p.BytesDone, p.Done, p.Status
		emit(q)
	}
	if li, ok := s.readLayerInfo(diffID.Hex); ok {
		report(Progress{BytesDone: total, Done: true, Status: StatusAlreadyExists})
		return li.Size, false, nil
	}
	if s.layers.running(diffID.Hex) {
		report(Progress{Status: StatusWaiting})
	}
	placed, joined, err := s.layers.do(ctx, diffID.Hex, report, func(ctx context.Context, emit func(Progress)) (bool, error) {
		return s.unpackLayer(ctx, r, l, dig, diffID, total, emit)
	})
	if err != nil {
		return 0, placed && !joined, err
	}
	li, ok := s.readLayerInfo(diffID.Hex)
	if !ok {
		return 0, false, fmt.Errorf("layer %s vanished after unpacking", diffID)
	}
	if joined {
		report(Progress{BytesDone: total, Done: true, Status: StatusDone})
	}
	return li.Size, placed && !joined, nil
}

// unpackLayer downloads, verifies and unpacks one layer into a temp dir and
// renames it into place, reporting whether it did (false: the layer was
// there already); on any error, or once ctx ends, the temp dir is removed
// and nothing is put in place.
func (s *Store) unpackLayer(ctx context.Context, r name.Reference, l v1.Layer, dig, diffID v1.Hash, total int64, emit func(Progress)) (bool, error) {
	if _, ok := s.readLayerInfo(diffID.Hex); ok {
		emit(Progress{BytesDone: total, Done: true, Status: StatusAlreadyExists})
		return false, nil
	}
	what := fmt.Sprintf("unpack layer %s of %s", dig, r.Name())
	// Locked before it exists, so another process's start-up sweep never
	// sees it unlocked (worklock.go).
	name := diffID.Hex[:12] + "-" + linkID()
	release, _, err := s.workLock(tmpLock(name), true)
	if err != nil {
		return false, diskErr(err, s.root, what)
	}
	defer release()
	tmp := s.path("tmp", name)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return false, diskErr(err, s.root, what)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return false, diskErr(err, s.root, what)
	}
	emit(Progress{BytesTotal: total, Status: StatusPulling})
	size, err := s.download(ctx, r, l, filepath.Join(tmp, "fs"), dig, diffID, total, emit)
	if err != nil {
		return false, err
	}
	li := layerInfo{DiffID: diffID.String(), Digest: dig.String(), Size: size, Link: linkID()}
	if err := writeJSON(filepath.Join(tmp, "layer.json"), li); err != nil {
		return false, diskErr(err, s.root, what)
	}
	if err := ctx.Err(); err != nil {
		return false, err // every caller gave up: put nothing in place
	}
	if err := os.Rename(tmp, s.layerDir(diffID.Hex)); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return false, nil // someone else (another process) got there first
		}
		return false, diskErr(err, s.root, what)
	}
	done = true
	if err := s.ensureLink(diffID.Hex, li.Link); err != nil {
		return true, diskErr(err, s.root, what)
	}
	emit(Progress{BytesDone: total, BytesTotal: total, Done: true, Status: StatusDone})
	s.log.Debug("layer unpacked", "layer", diffID.String(), "bytes", size)
	return true, nil
}

// ensureLink makes l/<id> point at the layer's fs directory.
func (s *Store) ensureLink(hex, id string) error {
	p := s.path("l", id)
	want := filepath.Join("..", "layers", hex, "fs")
	if got, err := os.Readlink(p); err == nil && got == want {
		return nil
	}
	// Snapshots are prepared concurrently: repair under a lock, so one
	// repair cannot remove the link another has just made.
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if got, err := os.Readlink(p); err == nil && got == want {
		return nil
	}
	os.Remove(p)
	return os.Symlink(want, p)
}

// linkID is a short random name for a layer's symlink. Random rather than a
// digest prefix, so no crafted layer can collide with another's name.
func linkID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
