package runtime

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCompiledProgramsKeptOnDisk: the next Runtime on a data dir (the next
// berth-agent run) loads the compiled default profile instead of
// compiling it; a damaged file is not loaded but compiled and written anew.
func TestCompiledProgramsKeptOnDisk(t *testing.T) {
	e := newEnv(t)
	const probe = `grep '^Seccomp:' /proc/self/status; unshare -U -r true 2>/dev/null; echo "unshare=$?"`
	const want = "Seccomp:\t2\nunshare=1\n"
	if out := e.output(t, e.spec("first", "sh", "-c", probe)); out != want {
		t.Fatalf("first container: %q, want %q", out, want)
	}
	files, _ := filepath.Glob(filepath.Join(e.rt.cfg.DataDir, "seccomp", "*"))
	if len(files) != 1 {
		t.Fatalf("program files %q, want one", files)
	}
	kept, err := os.ReadFile(files[0])
	must(t, err)
	fresh, err := e.rt.filters.Compile("", capNames())
	must(t, err)
	if f := readProgram(files[0]); f == nil || !bytes.Equal(f.Code, fresh.Encode()) || f.Flags != fresh.Flags {
		t.Fatalf("kept program differs from a fresh compile")
	}

	damaged := bytes.Clone(kept)
	damaged[len(damaged)/2] ^= 0xff
	must(t, os.WriteFile(files[0], damaged, 0o600))
	if readProgram(files[0]) != nil {
		t.Fatal("a damaged program file was loaded")
	}
	e.rt = e.newRuntime(t)
	if out := e.output(t, e.spec("second", "sh", "-c", probe)); out != want {
		t.Fatalf("with a damaged program file: %q, want %q", out, want)
	}
	if again, _ := os.ReadFile(files[0]); !bytes.Equal(again, kept) {
		t.Error("the damaged program file was not written anew")
	}
}

func capNames() []string {
	out := make([]string, len(DefaultCapabilities))
	for i, c := range DefaultCapabilities {
		out[i] = c.String()
	}
	return out
}
