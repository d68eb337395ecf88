package image

import "context"

// PullPolicy says when Get asks the registry, as docker run's --pull.
type PullPolicy string

// Pull policies.
const (
	// PullMissing uses the image pulled before under the reference when
	// all its layers are here, and pulls it otherwise (no network I/O
	// when it is here).
	PullMissing PullPolicy = "missing"
	// PullAlways asks the registry every time; it fails when the registry
	// cannot be reached.
	PullAlways PullPolicy = "always"
	// PullNever uses only what is here and fails when the image is not.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy checks a policy given by a user; empty means PullMissing.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case "":
		return PullMissing, nil
	case PullMissing, PullAlways, PullNever:
		return p, nil
	}
	return "", newErr(ErrInvalid, nil, "pull policy %q: want missing, always or never", s)
}

// Get returns the image ref names under policy: the one here (pulled
// before under that tag or digest, every layer present) or a fresh pull.
// A pull by digest that is here does no network I/O even with
// PullAlways, as Pull: the content cannot have changed.
func (s *Store) Get(ctx context.Context, ref string, policy PullPolicy, progress func(Progress), opts ...PullOption) (Image, error) {
	if policy == PullAlways {
		return s.Pull(ctx, ref, progress, opts...)
	}
	img, err := s.local(ref)
	switch {
	case err == nil:
		return img, nil // no progress: docker run says nothing either
	case policy == PullNever:
		return Image{}, err
	}
	return s.Pull(ctx, ref, progress, opts...)
}

// local is Lookup for an image whose layers are all present.
func (s *Store) local(ref string) (Image, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recordFor(r)
	if rec == nil || !s.layersPresent(rec.Layers) {
		return Image{}, newErr(ErrNotFound, nil, "image %q has not been pulled on this node", ref)
	}
	return rec.Image, nil
}
