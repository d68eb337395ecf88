package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Config configures a Store.
type Config struct {
	// Root is the directory holding layers, snapshots and metadata, for
	// example DATA_DIR/images. It must be absolute and not on overlayfs.
	Root string
	// Insecure lists registries (host:port) spoken to over plain HTTP.
	// 127.0.0.1 and localhost registries always are.
	Insecure []string
	// Auth returns basic-auth credentials for a registry (host:port); ok
	// false means anonymous. Nil means anonymous everywhere.
	Auth func(registry string) (user, pass string, ok bool)
	// Logger receives debug and operator logs; nil discards them.
	Logger *slog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Transport is the HTTP transport for registries; nil means a default
	// with bounded dial and header timeouts.
	Transport http.RoundTripper
	// StallTimeout fails a layer download that receives no bytes for this
	// long; zero means one minute.
	StallTimeout time.Duration
	// Retries is how many times a failed registry request is retried
	// (temporary errors only); zero means 2, negative means none.
	Retries int
	// MaxLayerSize bounds the bytes of regular files one layer unpacks
	// to; zero means DefaultMaxLayerSize, negative means no limit.
	MaxLayerSize int64
	// MaxLayerEntries bounds the tar entries of one layer; zero means
	// DefaultMaxLayerEntries, negative means no limit.
	MaxLayerEntries int64
}

// Store pulls images and manages layers and snapshots under one root.
// Its methods are safe for concurrent use.
type Store struct {
	cfg       Config
	root      string
	log       *slog.Logger
	now       func() time.Time
	transport http.RoundTripper

	pulls flight[Image]
	// layers unpack one layer each; the value tells whether the run put
	// the layer in place (false: it was there already).
	layers flight[bool]

	// snapMu is held shared by snapshot changes (each also holds its key's
	// lock in snapKeys) and exclusively by GC and whole-store scans; take
	// it before mu.
	snapMu   sync.RWMutex
	snapKeys keyLocks
	// linkMu serialises repairs of layer links (l/<id>).
	linkMu sync.Mutex
	// metaSaved is when images.json was last written for a LastUsed
	// change (guarded by mu).
	metaSaved time.Time
	// mu guards meta and inflight.
	mu       sync.Mutex
	meta     metadata
	inflight map[string]int // layer hex → pulls currently fetching it

	// insecure is Config.Insecure, replaceable by SetInsecure.
	insecureMu sync.RWMutex
	insecure   []string
}

// New opens (or creates) the store under cfg.Root, removes what a crash left
// half-made, and loads the image records.
func New(cfg Config) (*Store, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, newErr(ErrInvalid, nil, "image root %q must be an absolute path", cfg.Root)
	}
	s := &Store{
		cfg:       cfg,
		root:      filepath.Clean(cfg.Root),
		log:       cfg.Logger,
		now:       cfg.Clock,
		transport: cfg.Transport,
		inflight:  map[string]int{},
		insecure:  slices.Clone(cfg.Insecure),
	}
	// A failed pull discards the layers it unpacked; the layers it gave up
	// on must have finished (or never landed) by then.
	s.layers.waitCancelled = true
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.transport == nil {
		s.transport = defaultTransport()
	}
	for _, d := range []string{s.root, s.path("layers"), s.path("l"), s.path("tmp"), s.path("containers"), s.path(lockDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, diskErr(err, s.root, "open image store")
		}
	}
	if err := s.sweepTmp(); err != nil {
		return nil, err
	}
	if err := s.sweepSnapshots(); err != nil {
		return nil, err
	}
	m, err := loadMeta(s.path("images.json"))
	if err != nil {
		return nil, err
	}
	s.meta = m
	// A use within touchSaveEvery of the file's last write is not saved
	// again, even by a new process: otherwise every one-off berth-agent
	// run rewrote the file.
	if fi, err := os.Stat(s.path("images.json")); err == nil {
		s.metaSaved = fi.ModTime()
	}
	return s, nil
}

// Close waits for background pulls whose callers all gave up to finish
// cleaning up. It does not unmount snapshots: containers keep running.
func (s *Store) Close() error {
	s.pulls.wait()
	s.layers.wait()
	return nil
}

// SetInsecure replaces the registries (host:port) spoken to over plain
// HTTP; pulls that start afterwards use the new list. An agent calls it when
// the cluster's setting changes.
func (s *Store) SetInsecure(regs []string) {
	s.insecureMu.Lock()
	s.insecure = slices.Clone(regs)
	s.insecureMu.Unlock()
}

func (s *Store) isInsecure(registry string) bool {
	s.insecureMu.RLock()
	defer s.insecureMu.RUnlock()
	return slices.Contains(s.insecure, registry)
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

// sweepTmp removes layers a crash left half-unpacked, and those a GC
// gave up removing; not those another process is unpacking (worklock.go).
func (s *Store) sweepTmp() error {
	ents, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return diskErr(err, s.root, "sweep temporary layers")
	}
	for _, e := range ents {
		release, ok, err := s.workLock(tmpLock(e.Name()), false)
		if err != nil {
			return diskErr(err, s.root, "sweep temporary layers")
		}
		if !ok {
			continue // another process's pull
		}
		err = os.RemoveAll(s.path("tmp", e.Name()))
		release()
		if err != nil {
			return diskErr(err, s.root, "sweep temporary layers")
		}
	}
	return nil
}

// metadata is what images.json holds.
type metadata struct {
	// Images by digest (the digest a reference resolves to).
	Images map[string]*record `json:"images"`
	// Refs maps a normalised reference to an image digest.
	Refs map[string]string `json:"refs"`
}

// record is one pulled image.
type record struct {
	Image
	Pulled   time.Time `json:"pulled"`
	LastUsed time.Time `json:"last_used"`
}

func loadMeta(path string) (metadata, error) {
	m := metadata{Images: map[string]*record{}, Refs: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("read image records: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read image records %s: %w", path, err)
	}
	if m.Images == nil {
		m.Images = map[string]*record{}
	}
	if m.Refs == nil {
		m.Refs = map[string]string{}
	}
	return m, nil
}

// saveMeta persists the image records; s.mu is held.
func (s *Store) saveMeta() error {
	return writeJSON(s.path("images.json"), s.meta)
}

// writeJSON replaces path atomically and durably with v as JSON.
func writeJSON(path string, v any) error { return replaceJSON(path, v, true) }

// replaceJSON replaces path atomically with v as JSON; durable syncs the
// new file before it takes the old one's place. Records whose loss in a
// crash costs nothing (a last-used time, a snapshot thrown away with its
// container) skip the fsync, a few milliseconds on a busy disk.
func replaceJSON(path string, v any, durable bool) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readJSON decodes path into v.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// Images lists the recorded images.
func (s *Store) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.meta.Images))
	for _, r := range s.meta.Images {
		out = append(out, r.Image)
	}
	return out
}

// Lookup returns the recorded image a reference (tag or digest) resolved to
// when it was last pulled, without network I/O.
func (s *Store) Lookup(ref string) (Image, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.recordFor(r); rec != nil {
		return rec.Image, nil
	}
	return Image{}, newErr(ErrNotFound, nil, "image %q has not been pulled on this node", ref)
}

// markInflight protects layers a pull is fetching from GC until the image
// is recorded; the returned func releases them.
func (s *Store) markInflight(hexes []string) func() {
	s.mu.Lock()
	for _, h := range hexes {
		s.inflight[h]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range hexes {
			if s.inflight[h]--; s.inflight[h] <= 0 {
				delete(s.inflight, h)
			}
		}
	}
}

func defaultTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer().DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   50,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// keyLocks is a mutex per key, made on first use and dropped when unused.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
