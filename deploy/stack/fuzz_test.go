package stack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzStack feeds arbitrary Compose files to Load and Translate: neither
// may panic; a file either fails with a message or gives specs that are
// named for the stack, labelled with it, and marshal.
func FuzzStack(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Files outside the test's directory stay unread: a path such as
		// /dev/zero in env_file would only measure the disk.
		for _, p := range []string{"/dev", "/proc", "/sys", ".."} {
			if bytes.Contains(data, []byte(p)) {
				t.Skip()
			}
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "compose.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Read(context.Background(), "fz", Options{Files: []string{file}, Env: []string{"TOKEN=x"}}, false)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		for _, svc := range s.Services {
			if !strings.HasPrefix(svc.GetAnnotations().GetName(), "fz_") || svc.GetAnnotations().GetLabels()[Namespace] != "fz" {
				t.Fatalf("service %q not named or labelled for the stack", svc.GetAnnotations().GetName())
			}
			if _, err := proto.Marshal(svc); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range s.Networks {
			if n.GetAnnotations().GetLabels()[Namespace] != "fz" {
				t.Fatalf("network %q not labelled", n.GetAnnotations().GetName())
			}
		}
	})
}
