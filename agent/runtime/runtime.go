package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"berth/agent/runtime/cgroups"
	"berth/seccomp"
)

// Config configures a Runtime.
type Config struct {
	// DataDir holds containers/<id>/ (logs), volumes/<name>/ and, by
	// default, the state dir.
	DataDir string
	// StateDir holds containers/<id>/ with each container's runtime state
	// (record, exit file, exec socket, init log). New mounts a tmpfs on it
	// unless it is on one already (statedir.go says why).
	// DataDir/state when empty.
	StateDir string
	// CgroupParent is the parent group of all containers: absolute from
	// the hierarchy root, or relative to the agent's own cgroup. "/berth"
	// when empty.
	CgroupParent string
	// CgroupRoot is where cgroups are mounted; /sys/fs/cgroup when empty.
	CgroupRoot string
	// InitPath is the container init binary (its main calls
	// initproc.Main). When empty, the init embedded in this binary is
	// written to DataDir/berth-init and used; a build without one (see
	// initbin/README.md) re-executes the running binary instead, whose
	// main must then call initproc.IsInit and initproc.Main first thing.
	InitPath string
	// SpareInit keeps an init started ahead for the next container
	// (spare.go), for a long-lived runtime: the agent's.
	SpareInit bool
	// UserNSBase is the host uid/gid that root maps to in containers with
	// Spec.UserNS (65536 ids are mapped); 100000 when zero.
	UserNSBase uint32
	Logger     *slog.Logger
}

// Runtime runs the containers of one node.
type Runtime struct {
	cfg      Config
	cg       *cgroups.Hierarchy
	log      *slog.Logger
	filters  seccomp.Cache // compiled seccomp programs by profile
	programs *programCache // and on disk, for the next process
	state    *stateDir
	spares   *spares // nil without Config.SpareInit

	mu         sync.Mutex
	containers map[string]*Container
	closed     bool
}

// New checks the host (cgroup layout, data directory) and returns a
// Runtime. Running containers from an earlier agent are picked up by Adopt.
func New(cfg Config) (*Runtime, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("runtime: Config.DataDir is required")
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/berth"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = cgroups.DefaultRoot
	}
	if cfg.UserNSBase == 0 {
		cfg.UserNSBase = 100000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.DataDir, stateDirName)
	}
	h, err := cgroups.Detect(cfg.CgroupRoot)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	for _, d := range []string{"containers", "volumes"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("runtime: create data dir: %w", diskError(err))
		}
	}
	if cfg.InitPath == "" {
		if cfg.InitPath, err = defaultInit(cfg.DataDir, cfg.Logger); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	state, err := openStateDir(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	r := &Runtime{cfg: cfg, cg: h, log: cfg.Logger, state: state, containers: map[string]*Container{},
		programs: &programCache{dir: filepath.Join(cfg.DataDir, "seccomp")}}
	if cfg.SpareInit {
		r.spares = &spares{make: func() (*initProc, error) { return r.spawnInit(r.initAttr(&Spec{})) }, log: cfg.Logger}
		r.spares.refill()
	}
	return r, nil
}

// defaultInit installs the embedded init in dataDir, or falls back to the
// running executable when this binary was built without one.
func defaultInit(dataDir string, log *slog.Logger) (string, error) {
	path, err := installInit(dataDir)
	if err != nil || path != "" {
		return path, err
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable for the init: %w", err)
	}
	log.Warn("built without the dedicated container init (make build-init): containers run this binary re-executed as their init, which costs more memory and start time", "init", exe)
	return exe, nil
}

// InitPath is the container init binary new containers start.
func (r *Runtime) InitPath() string { return r.cfg.InitPath }

// CgroupVersion reports the cgroup layout the runtime uses (1 or 2).
func (r *Runtime) CgroupVersion() int { return int(r.cg.Version) }

// containerDir is the container's state directory, on the tmpfs.
func (r *Runtime) containerDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "containers", id)
}

// logDir is the container's log directory, on disk.
func (r *Runtime) logDir(id string) string {
	return filepath.Join(r.cfg.DataDir, "containers", id)
}

// VolumeDir is the host directory holding the named volume's data.
func (r *Runtime) VolumeDir(name string) string {
	return filepath.Join(r.cfg.DataDir, "volumes", name, "_data")
}

// Taken reports whether a container with id exists here, known to this
// Runtime or only on disk (one another process started).
func (r *Runtime) Taken(id string) bool {
	if _, err := r.Get(id); err == nil {
		return true
	}
	_, err := os.Lstat(r.containerDir(id))
	return err == nil
}

// Get returns the container with id.
func (r *Runtime) Get(id string) (*Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return c, nil
}

// List returns the known containers, running and exited, sorted by ID.
func (r *Runtime) List() []*Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Container, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Close detaches the runtime from its containers without stopping them,
// as an agent exiting for an upgrade does; another Runtime on the same
// DataDir adopts them. When no container is left in the cgroup parent,
// its directories go too: a clean stop leaves no empty cgroup behind. The
// last runtime out of a state dir with no container left unmounts its
// tmpfs.
func (r *Runtime) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	if r.spares != nil {
		r.spares.close()
	}
	if err := r.state.close(); err != nil {
		r.log.Warn("release the state dir", "dir", r.cfg.StateDir, "err", err)
	}
	if err := r.cg.RemoveParent(r.cfg.CgroupParent); err != nil {
		r.log.Warn("remove the empty cgroup parent", "parent", r.cfg.CgroupParent, "err", err)
	}
}

func (r *Runtime) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Adopt loads every container recorded under StateDir that this runtime
// does not know yet: running ones are reattached (not restarted), those
// that ended while no agent watched get their exit status recorded. Logs
// of containers without state (lost in a reboot) are removed.
func (r *Runtime) Adopt(ctx context.Context) ([]*Container, error) {
	base := filepath.Join(r.cfg.StateDir, "containers")
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	var out []*Container
	var errs []error
	for _, e := range entries {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if _, err := r.Get(e.Name()); err == nil {
			continue
		}
		c, err := r.adopt(e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	old, err := r.adoptLogDirs()
	return append(out, old...), errors.Join(append(errs, err)...)
}

func (r *Runtime) adopt(id string) (*Container, error) {
	dir := r.containerDir(id)
	rec, err := loadRecord(dir)
	if err != nil {
		// A container half-made when the agent died: nothing runs there.
		r.log.Warn("removing container without state", "container", id, "err", err)
		return nil, errors.Join(err, os.RemoveAll(r.logDir(id)), os.RemoveAll(dir))
	}
	return r.adoptRecord(newContainer(r, rec)), nil
}

// adoptRecord registers a container loaded from its record and watches it
// when it still runs.
func (r *Runtime) adoptRecord(c *Container) *Container {
	id, rec := c.id, c.rec
	r.mu.Lock()
	r.containers[id] = c
	r.mu.Unlock()
	if rec.Exit != nil {
		close(c.done)
		return c
	}
	if err := c.attach(); err != nil {
		r.log.Info("container ended while no agent watched", "container", id, "reason", err)
		go c.finalize(nil)
		return c
	}
	r.log.Info("adopted running container", "container", id, "pid", rec.Pid)
	go c.watch()
	return c
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.containers, id)
}
