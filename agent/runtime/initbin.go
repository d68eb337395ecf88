package runtime

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// The container init is its own small binary (internal/cmd/berth-init),
// embedded here so that berth-agent is still one file to ship. `make
// build-init` builds it into initbin/ before anything is compiled; the
// directory always holds a README, so a build without the init still
// compiles (and falls back to re-executing the running binary).
//
//go:embed initbin
var initBin embed.FS

// embeddedInit is the path of the init binary inside initBin.
const embeddedInit = "initbin/berth-init"

// initFile is the init's file name in Config.DataDir.
const initFile = "berth-init"

// embeddedInitBinary returns the embedded init, or nil when this binary
// was built without one.
func embeddedInitBinary() []byte {
	data, err := fs.ReadFile(initBin, embeddedInit)
	if err != nil {
		return nil
	}
	return data
}

// installInit writes the embedded init to dataDir when the file there is
// missing or differs from it (by SHA-256), and returns its path. A new
// file replaces the old one by rename: running containers keep the
// binary they started with. It returns "" when there is no embedded init.
func installInit(dataDir string) (string, error) {
	data := embeddedInitBinary()
	if data == nil {
		return "", nil
	}
	path := filepath.Join(dataDir, initFile)
	if cur, err := os.ReadFile(path); err == nil {
		if a, b := sha256.Sum256(cur), sha256.Sum256(data); bytes.Equal(a[:], b[:]) {
			return path, nil
		}
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write container init %s: %w", tmp, diskError(err))
	}
	// WriteFile's mode is filtered by the umask; the init must be
	// executable by a user-namespaced container's root too.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write container init %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write container init %s: %w", path, err)
	}
	return path, nil
}
