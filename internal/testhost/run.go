package testhost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every object the package creates.
const Prefix = "bth"

// stateDir holds one <id>.pid file per run and the lock that serialises
// creation and sweeping.
const stateDir = "/run/berth-testhost"

// objectRE matches the name of any object of any run and captures its run id.
var objectRE = regexp.MustCompile(`^` + Prefix + `([0-9a-f]{4})`)

// runOf returns the run id an object name belongs to, or "" if the name is
// not one of ours.
func runOf(name string) string {
	m := objectRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1]
}

// newRunID returns four random hex digits.
func newRunID() (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// owner identifies a process across PID reuse by its PID and start time.
type owner struct {
	pid   int
	start string
}

func pidFile(id string) string { return filepath.Join(stateDir, id+".pid") }

// self returns the owner record of the calling process.
func self() (owner, error) {
	pid := os.Getpid()
	_, start, err := procStat(pid)
	if err != nil {
		return owner{}, err
	}
	return owner{pid: pid, start: start}, nil
}

// procStat returns the state (field 3) and start time (field 22, clock
// ticks since boot) from /proc/<pid>/stat.
func procStat(pid int) (state, start string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields after its ')' don't.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", "", fmt.Errorf("parse stat of pid %d: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	const stateField, startField = 3 - 3, 22 - 3 // f[0] is field 3
	if len(f) <= startField {
		return "", "", fmt.Errorf("parse stat of pid %d: %d fields", pid, len(f))
	}
	return f[stateField], f[startField], nil
}

// alive reports whether the process recorded in o still runs. A zombie
// does not: in a container whose init never reaps, a killed test stays one.
func (o owner) alive() bool {
	state, start, err := procStat(o.pid)
	return err == nil && start == o.start && state != "Z" && state != "X"
}

func writeOwner(id string, o owner) error {
	data := fmt.Sprintf("%d %s\n", o.pid, o.start)
	if err := os.WriteFile(pidFile(id), []byte(data), 0o644); err != nil {
		return fmt.Errorf("record owner of run %s: %w", id, err)
	}
	return nil
}

func readOwner(id string) (owner, error) {
	b, err := os.ReadFile(pidFile(id))
	if err != nil {
		return owner{}, fmt.Errorf("read owner of run %s: %w", id, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return owner{}, fmt.Errorf("parse owner of run %s: %q", id, b)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return owner{}, fmt.Errorf("parse owner of run %s: %w", id, err)
	}
	return owner{pid: pid, start: f[1]}, nil
}

// liveRuns returns the ids of runs whose owner is alive, and the ids of the
// pid files whose owner is dead or unreadable.
func liveRuns() (live map[string]bool, dead []string, err error) {
	ents, err := os.ReadDir(stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("list runs: %w", err)
	}
	live = map[string]bool{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		if o, err := readOwner(id); err == nil && o.alive() {
			live[id] = true
		} else {
			dead = append(dead, id)
		}
	}
	return live, dead, nil
}

// lock takes the machine-wide lock that serialises Create and Sweep. The
// kernel drops it if the process dies.
func lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("make %s: %w", stateDir, err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
