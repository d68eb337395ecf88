package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
	"berth/seccomp"
)

// seccompFilter compiles the filter s asks for (Docker's default profile
// unless Spec.Seccomp says otherwise) for the capabilities container
// processes keep. Container starts are hot: programs are kept in memory
// and, for the next process on this data dir, on disk (programCache).
func (r *Runtime) seccompFilter(s *Spec) (*initconf.Seccomp, error) {
	if s.Seccomp == seccomp.Unconfined {
		return nil, nil
	}
	caps := make([]string, len(DefaultCapabilities))
	for i, c := range DefaultCapabilities {
		caps[i] = c.String()
	}
	path := r.programs.path(s.Seccomp, caps)
	if f := r.programs.load(path); f != nil {
		return f, nil
	}
	p, err := r.filters.Compile(s.Seccomp, caps)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	f := &initconf.Seccomp{Flags: p.Flags, Code: p.Encode()}
	if err := r.programs.store(path, f); err != nil {
		r.log.Debug("keep compiled seccomp program", "err", err)
	}
	return f, nil
}

// programCache keeps compiled seccomp programs under DataDir/seccomp, so
// that a one-off `berth-agent run` does not compile Docker's profile
// again (a millisecond of every run). A file is named by the hash of the
// profile, the capabilities and the identity of the running executable
// (device, inode, size, modification time): another build of the agent
// compiles anew. Each file ends with the SHA-256 of what precedes it; a
// file that does not match is ignored and written again.
type programCache struct {
	dir string

	once sync.Once
	exe  string // the running executable's identity; "" when unknown

	mu  sync.Mutex
	mem map[string]*initconf.Seccomp // by path: what this process has seen
}

func (pc *programCache) path(profile string, caps []string) string {
	pc.once.Do(func() {
		var st unix.Stat_t
		if unix.Stat("/proc/self/exe", &st) == nil {
			pc.exe = fmt.Sprintf("%d:%d:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		}
	})
	if pc.exe == "" || pc.dir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(pc.exe + "\x00" + strings.Join(caps, ",") + "\x00" + profile))
	return filepath.Join(pc.dir, hex.EncodeToString(sum[:]))
}

// load returns the program kept at path, or nil.
func (pc *programCache) load(path string) *initconf.Seccomp {
	if path == "" {
		return nil
	}
	pc.mu.Lock()
	f := pc.mem[path]
	pc.mu.Unlock()
	if f != nil {
		return f
	}
	if f = readProgram(path); f != nil {
		pc.remember(path, f)
	}
	return f
}

// remember keeps f for path in memory; a node sees few profiles.
func (pc *programCache) remember(path string, f *initconf.Seccomp) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.mem == nil || len(pc.mem) >= 32 {
		pc.mem = map[string]*initconf.Seccomp{}
	}
	pc.mem[path] = f
}

// readProgram reads a program file, nil when missing or damaged.
func readProgram(path string) *initconf.Seccomp {
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 4+8+sha256.Size {
		return nil
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) || (len(body)-4)%8 != 0 {
		return nil
	}
	return &initconf.Seccomp{Flags: binary.LittleEndian.Uint32(body), Code: body[4:]}
}

// store writes f at path (atomically: a temporary file renamed).
func (pc *programCache) store(path string, f *initconf.Seccomp) error {
	if path == "" {
		return nil
	}
	pc.remember(path, f)
	body := binary.LittleEndian.AppendUint32(nil, f.Flags)
	body = append(body, f.Code...)
	sum := sha256.Sum256(body)
	if err := os.MkdirAll(pc.dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, append(body, sum[:]...), 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
