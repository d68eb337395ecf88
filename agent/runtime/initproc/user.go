package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"berth/agent/runtime/initconf"
)

// execUser is the identity the container's processes run as.
type execUser struct {
	UID, GID uint32
	Groups   []uint32
	Home     string
}

// lookupUser resolves spec (uid[:gid] or name[:group], empty for root)
// against the container's /etc/passwd and /etc/group. It runs after
// pivot_root, so the files are the image's own.
func lookupUser(spec string) (execUser, error) {
	u := execUser{Home: "/"}
	name, group, hasGroup := strings.Cut(spec, ":")
	passwd := readColonFile("/etc/passwd")
	if name == "" {
		name = "0"
	}
	found := false
	for _, f := range passwd {
		if len(f) < 6 || (f[0] != name && f[2] != name) {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		u.UID, u.GID, u.Home, found = uint32(uid), uint32(gid), f[5], true
		name = f[0]
		break
	}
	if !found {
		uid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			return u, fmt.Errorf("user %q: no such user in the image's /etc/passwd", spec)
		}
		u.UID, u.GID = uint32(uid), uint32(uid)
	}
	groups := readColonFile("/etc/group")
	if hasGroup {
		gid, err := lookupGroup(groups, group)
		if err != nil {
			return u, fmt.Errorf("user %q: %w", spec, err)
		}
		u.GID = gid
	}
	for _, f := range groups {
		if len(f) < 4 {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
					u.Groups = append(u.Groups, uint32(gid))
				}
			}
		}
	}
	u.Groups = append([]uint32{u.GID}, u.Groups...)
	return u, nil
}

func lookupGroup(groups [][]string, g string) (uint32, error) {
	for _, f := range groups {
		if len(f) >= 3 && (f[0] == g || f[2] == g) {
			if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				return uint32(gid), nil
			}
		}
	}
	gid, err := strconv.ParseUint(g, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q: no such group in the image's /etc/group", g)
	}
	return uint32(gid), nil
}

// readColonFile splits an /etc/passwd-style file; a missing file is empty.
func readColonFile(path string) [][]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// lookPath finds the command in the container, with the user's PATH, and
// says in words why it cannot be run.
func lookPath(cmd string, env []string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, checkExecutable(cmd)
	}
	path := initconf.DefaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, cmd)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, initconf.ErrPermissionDenied) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("%w: %q is not in the image (PATH=%s)", initconf.ErrCommandNotFound, cmd, path)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %s does not exist in the image", initconf.ErrCommandNotFound, p)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("run %s: %w (no access to the file)", p, initconf.ErrPermissionDenied)
	case err != nil:
		return fmt.Errorf("run %s: %w", p, err)
	case fi.IsDir():
		return fmt.Errorf("run %s: %w (it is a directory)", p, initconf.ErrPermissionDenied)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("run %s: %w (the file is not executable)", p, initconf.ErrPermissionDenied)
	}
	return nil
}
