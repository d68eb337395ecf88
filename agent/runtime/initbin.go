package runtime

import (
	"bytes"
	"embed"
	"fmt"
	"io"
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
// missing or differs from it, and returns its path. A new file replaces
// the old one by rename: running containers keep the binary they started
// with. It returns "" when there is no embedded init.
func installInit(dataDir string) (string, error) {
	want, err := initBin.Open(embeddedInit)
	if err != nil {
		return "", nil
	}
	defer want.Close()
	path := filepath.Join(dataDir, initFile)
	if same, err := sameFile(path, want); err != nil || same {
		return path, err
	}
	data := embeddedInitBinary()
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

// sameFile reports whether the file at path is an executable copy of
// want, comparing size, then the bytes themselves in chunks: as strong a
// check as comparing hashes, and a fraction of a millisecond where
// hashing 2.5 MB twice took ~8, which `berth-agent run` would pay on every
// start.
func sameFile(path string, want fs.File) (bool, error) {
	wst, err := want.Stat()
	if err != nil {
		return false, err
	}
	f, err := os.Open(path)
	if err != nil {
		return false, nil // missing or unreadable: write it anew
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() != wst.Size() || st.Mode().Perm() != 0o755 {
		return false, nil
	}
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(want, a)
		if _, ferr := io.ReadFull(f, b[:n]); ferr != nil || !bytes.Equal(a[:n], b[:n]) {
			return false, nil
		}
		if err != nil { // io.EOF or io.ErrUnexpectedEOF: want is done
			return true, nil
		}
	}
}
