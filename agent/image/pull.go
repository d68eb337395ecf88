package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// parallelLayers is how many layers of one image download at once.
const parallelLayers = 3

func dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
}

// PullOption changes one pull.
type PullOption func(*pullOptions)

type pullOptions struct {
	auth       bool
	user, pass string
}

// WithBasicAuth makes one pull authenticate to the image's registry with
// user and pass instead of what Config.Auth gives. The store keeps them
// only while the pull runs: it neither logs nor writes them.
func WithBasicAuth(user, pass string) PullOption {
	return func(o *pullOptions) { o.auth, o.user, o.pass = true, user, pass }
}

// flightKey separates pulls of one reference with different credentials,
// so that a pull never shares the outcome (say, "unauthorized") of a pull
// made with other credentials. Only a digest of them is kept.
func (o pullOptions) flightKey(ref string) string {
	if !o.auth {
		return ref
	}
	sum := sha256.Sum256([]byte(o.user + "\x00" + o.pass))
	return ref + "\x00auth:" + hex.EncodeToString(sum[:])
}

// Pull fetches ref (name:tag or name@sha256:…) unless it is already here,
// unpacks its layers for linux/GOARCH and records it. Concurrent pulls of the
// same reference (and credentials) share one download; progress (may be
// nil) receives updates. A pull by digest that is already present does no
// network I/O; a pull by tag asks the registry only for the manifest digest.
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress), opts ...PullOption) (Image, error) {
	var o pullOptions
	for _, opt := range opts {
		opt(&o)
	}
	r, err := s.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	img, _, err := s.pulls.do(ctx, o.flightKey(r.Name()), progress, func(ctx context.Context, emit func(Progress)) (Image, error) {
		return s.pull(ctx, r, o, emit)
	})
	return img, err
}

func (s *Store) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, newErr(ErrInvalid, err, "invalid image reference %q", ref)
	}
	if s.isInsecure(r.Context().RegistryStr()) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, newErr(ErrInvalid, err, "invalid image reference %q", ref)
		}
	}
	return r, nil
}

func (s *Store) pull(ctx context.Context, r name.Reference, o pullOptions, emit func(Progress)) (Image, error) {
	if img, ok := s.cachedByDigest(r); ok {
		emitCached(img, emit)
		return img, nil
	}
	reg := r.Context().RegistryStr()
	emit(Progress{Ref: r.Name(), Status: StatusResolving})
	p, err := remote.NewPuller(s.remoteOpts(ctx, reg, o)...)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", r.Name(), err)
	}
	if _, isTag := r.(name.Tag); isTag {
		if img, ok := s.cachedByTag(ctx, p, r); ok {
			emitCached(img, emit)
			return img, nil
		}
	}
	desc, err := p.Get(ctx, r)
	if err != nil {
		return Image{}, registryErr(err, r.Name(), reg)
	}
	img, err := desc.Image()
	if err != nil {
		return Image{}, platformErr(registryErr(err, r.Name(), reg), r.Name())
	}
	out, err := s.fetchImage(ctx, r, desc.Digest.String(), img, emit)
	if err != nil {
		return Image{}, err
	}
	s.log.Info("image pulled", "ref", out.Ref, "digest", out.Digest, "layers", len(out.Layers))
	return out, nil
}

// platformErr makes "no child with platform" a clear not-found error.
func platformErr(err error, ref string) error {
	if err != nil && strings.Contains(err.Error(), "no child with platform") {
		return newErr(ErrNotFound, nil, "image %q has no linux/%s variant", ref, runtime.GOARCH)
	}
	return err
}

func (s *Store) remoteOpts(ctx context.Context, reg string, o pullOptions) []remote.Option {
	steps := 3
	if s.cfg.Retries > 0 {
		steps = s.cfg.Retries + 1
	} else if s.cfg.Retries < 0 {
		steps = 1
	}
	auth := authn.Anonymous
	if o.auth {
		auth = &authn.Basic{Username: o.user, Password: o.pass}
	} else if s.cfg.Auth != nil {
		if u, pw, ok := s.cfg.Auth(reg); ok {
			auth = &authn.Basic{Username: u, Password: pw}
		}
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(s.transport),
		remote.WithAuth(auth),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: steps}),
	}
}

// emitCached reports every layer of an image found locally as done.
func emitCached(img Image, emit func(Progress)) {
	for i, l := range img.Layers {
		emit(Progress{Ref: img.Ref, Layer: l, LayerIndex: i, Layers: len(img.Layers), Done: true, Status: StatusAlreadyExists})
	}
}

// cachedByDigest answers a pull by digest from local records.
func (s *Store) cachedByDigest(r name.Reference) (Image, bool) {
	d, ok := r.(name.Digest)
	if !ok {
		return Image{}, false
	}
	return s.useRecord(r.Name(), d.DigestStr())
}

// cachedByTag asks the registry (HEAD) which digest the tag names and answers
// from local records if that image is complete here.
func (s *Store) cachedByTag(ctx context.Context, p *remote.Puller, r name.Reference) (Image, bool) {
	d, err := p.Head(ctx, r)
	if err != nil {
		s.log.Debug("manifest HEAD failed; falling back to GET", "ref", r.Name(), "err", err)
		return Image{}, false
	}
	return s.useRecord(r.Name(), d.Digest.String())
}

// useRecord returns the image recorded under digest if all its layers are
// unpacked, and points ref at it.
func (s *Store) useRecord(ref, digest string) (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.meta.Images[digest]
	if rec == nil || !s.layersPresent(rec.Layers) {
		return Image{}, false
	}
	rec.LastUsed = s.now()
	rec.Ref = ref
	if !isDigestRef(ref) {
		s.meta.Refs[ref] = digest
	}
	if err := s.saveMeta(); err != nil {
		s.log.Warn("save image records", "err", err)
	}
	return rec.Image, true
}

// recordFor finds the image a reference was last pulled as; s.mu is held.
func (s *Store) recordFor(r name.Reference) *record {
	if d, ok := r.(name.Digest); ok {
		return s.meta.Images[d.DigestStr()]
	}
	return s.meta.Images[s.meta.Refs[r.Name()]]
}

func (s *Store) layersPresent(diffIDs []string) bool {
	for _, d := range diffIDs {
		if _, err := os.Stat(s.layerDir(hexOf(d))); err != nil {
			return false
		}
	}
	return true
}

// isDigestRef reports whether a normalised reference pins a digest.
func isDigestRef(ref string) bool { return strings.Contains(ref, "@") }

// hexOf strips the algorithm from a digest string.
func hexOf(digest string) string {
	_, h, _ := strings.Cut(digest, ":")
	return h
}
