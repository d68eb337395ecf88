package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"berth/agent/runtime/initconf"
)

// MountType is the kind of a container mount.
type MountType string

// The mount types.
const (
	MountBind   MountType = "bind"   // Source is a host path
	MountVolume MountType = "volume" // Source is a volume name; kept across containers
	MountTmpfs  MountType = "tmpfs"  // Source is ignored; Options may hold size=, mode=
)

// Mount is one filesystem placed in the container.
type Mount struct {
	Type     MountType `json:"type"`
	Source   string    `json:"source,omitempty"`
	Target   string    `json:"target"`
	ReadOnly bool      `json:"readOnly,omitempty"`
	Options  []string  `json:"options,omitempty"` // tmpfs data options, e.g. "size=64m"
}

// Resources are the cgroup limits of a container. Zero means unlimited.
type Resources struct {
	MemoryBytes int64  `json:"memoryBytes,omitempty"`
	NanoCPUs    int64  `json:"nanoCPUs,omitempty"` // 1e9 = one CPU; sets a CFS quota
	CPUShares   uint64 `json:"cpuShares,omitempty"`
	PidsLimit   int64  `json:"pidsLimit,omitempty"`
}

// Rlimit is one resource limit (setrlimit) for the container's processes.
type Rlimit struct {
	Type string `json:"type"` // e.g. "RLIMIT_NOFILE" or "nofile"
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// Spec is everything needed to run one container.
type Spec struct {
	ID             string         `json:"id"`
	Rootfs         string         `json:"rootfs"` // a prepared directory or mounted overlay
	ReadonlyRootfs bool           `json:"readonlyRootfs,omitempty"`
	Args           []string       `json:"args"`
	Env            []string       `json:"env,omitempty"`
	Cwd            string         `json:"cwd,omitempty"`
	User           string         `json:"user,omitempty"` // uid[:gid] or name[:group] from the image
	Hostname       string         `json:"hostname,omitempty"`
	Mounts         []Mount        `json:"mounts,omitempty"`
	Resources      Resources      `json:"resources,omitempty"`
	Rlimits        []Rlimit       `json:"rlimits,omitempty"`
	StopSignal     syscall.Signal `json:"stopSignal,omitempty"` // SIGTERM when zero
	StopGrace      time.Duration  `json:"stopGrace,omitempty"`  // 10s when zero
	HostNetwork    bool           `json:"hostNetwork,omitempty"`
	UserNS         bool           `json:"userNS,omitempty"` // map root to Config.UserNSBase
	TTY            bool           `json:"tty,omitempty"`
	// Rows and Cols size the terminal before the process starts (TTY
	// only; zero leaves the kernel's default).
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Stdin, if set, is what the user process reads (with TTY, what is
	// typed into its terminal) instead of /dev/null: the read end of a
	// pipe the caller writes, as `docker run -i`. Run hands it to the
	// container; the caller closes its copy after Run. Not saved.
	Stdin       *os.File `json:"-"`
	LogMaxBytes int64    `json:"logMaxBytes,omitempty"` // 10 MiB when zero
	LogMaxFiles int      `json:"logMaxFiles,omitempty"` // 3 when zero (current + 2 rotated)
	// Seccomp is the syscall filter of every process in the container:
	// Docker's default profile when empty, none with "unconfined", else a
	// profile in Docker's JSON format.
	Seccomp string `json:"seccomp,omitempty"`
	// Labels are the container's metadata, as Docker's: kept in its
	// record for berth-agent ps and inspect, never seen inside it.
	Labels map[string]string `json:"labels,omitempty"`
	// PreStart, if set, runs once the container's namespaces exist and
	// before its user process starts, with the pid of its init: the agent
	// gives the container its network interfaces there, so the process
	// never runs without them (runc's createRuntime hooks). An error fails
	// Run; PreStart undoes its own work before returning one, and the
	// caller undoes it when Run fails later. Not saved with the container.
	PreStart func(ctx context.Context, pid int) error `json:"-"`
}

// Defaults applied when a Spec leaves a field zero.
const (
	DefaultStopGrace   = 10 * time.Second
	DefaultLogMaxBytes = 10 << 20
	DefaultLogMaxFiles = 3
	DefaultPath        = initconf.DefaultPath
)

// ValidID reports whether id can name a container: 1-128 letters,
// digits, '_', '.' or '-', starting with a letter or digit.
func ValidID(id string) bool { return isName(id, 128) }

// isName reports whether s is 1 to max (any when 0) letters, digits,
// '_', '.' or '-', starting with a letter or digit. (A regexp did this:
// compiling `{0,127}` at package init cost every berth-agent process,
// `run` included, a fifth of a millisecond.)
func isName(s string, max int) bool {
	if s == "" || (max > 0 && len(s) > max) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// ErrInvalidSpec wraps every validation failure of a Spec.
var ErrInvalidSpec = initconf.ErrInvalidSpec

// Validate reports the first field of s a user must fix.
func (s *Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	switch {
	case !isName(s.ID, 128):
		return bad("id %q: use 1-128 letters, digits, '_', '.' or '-'", s.ID)
	case !filepath.IsAbs(s.Rootfs):
		return bad("rootfs %q: must be an absolute path", s.Rootfs)
	case len(s.Args) == 0 || s.Args[0] == "":
		return bad("args: a command to run is required")
	case s.Cwd != "" && !filepath.IsAbs(s.Cwd):
		return bad("cwd %q: must be an absolute path", s.Cwd)
	case s.Resources.MemoryBytes < 0 || s.Resources.NanoCPUs < 0 || s.Resources.PidsLimit < 0:
		return bad("resources: limits must not be negative")
	case s.Resources.MemoryBytes > 0 && s.Resources.MemoryBytes < 4<<20:
		return bad("resources.memoryBytes %d: the minimum is 4 MiB", s.Resources.MemoryBytes)
	}
	if _, ok := s.Labels[""]; ok {
		return bad("labels: a label needs a key (key=value)")
	}
	if len(s.Mounts) > maxMounts {
		return bad("mounts: %d mounts; at most %d are allowed", len(s.Mounts), maxMounts)
	}
	for i, m := range s.Mounts {
		if err := m.validate(); err != nil {
			return bad("mounts[%d]: %v", i, err)
		}
	}
	for _, r := range s.Rlimits {
		if _, ok := rlimitByName(r.Type); !ok {
			return bad("rlimits: unknown type %q", r.Type)
		}
	}
	return nil
}

func (m *Mount) validate() error {
	if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) == "/" {
		return fmt.Errorf("target %q: must be an absolute path other than /", m.Target)
	}
	switch m.Type {
	case MountBind:
		if !filepath.IsAbs(m.Source) {
			return fmt.Errorf("bind source %q: must be an absolute host path", m.Source)
		}
	case MountVolume:
		if !isName(m.Source, 0) {
			return fmt.Errorf("volume name %q: use letters, digits, '_', '.' or '-'", m.Source)
		}
	case MountTmpfs:
	default:
		return fmt.Errorf("type %q: use bind, volume or tmpfs", m.Type)
	}
	return nil
}

func (s *Spec) stopSignal() syscall.Signal {
	if s.StopSignal == 0 {
		return syscall.SIGTERM
	}
	return s.StopSignal
}

func (s *Spec) stopGrace() time.Duration {
	if s.StopGrace <= 0 {
		return DefaultStopGrace
	}
	return s.StopGrace
}

// ExitStatus is how a container ended; the init writes it.
type ExitStatus = initconf.ExitStatus

// Exit reasons.
const (
	ReasonCompleted = initconf.ReasonCompleted // exit code 0
	ReasonError     = initconf.ReasonError     // non-zero exit code
	ReasonKilled    = initconf.ReasonKilled    // ended by a signal
	ReasonOOMKilled = initconf.ReasonOOMKilled // the kernel's OOM killer ended it
	ReasonLost      = initconf.ReasonLost      // the status could not be recovered after a restart
)
