package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCloseRemovesTheEmptyCgroupParent: a runtime that stops with
// containers running keeps their cgroup parent (an agent upgrade: the
// next one adopts them); one that stops with none left removes the
// parent's directories in every hierarchy, so a clean stop leaves no
// empty cgroup behind.
func TestCloseRemovesTheEmptyCgroupParent(t *testing.T) {
	e := newEnv(t)
	e.parent += "/close-test/agent"
	e.rt = e.newRuntime(t)
	c := e.run(t, e.spec("c1", "sleep", "1000"))
	var parents []string // the parent's directories, per hierarchy
	for _, p := range c.rec.Cgroup.Paths {
		parents = append(parents, filepath.Dir(p), filepath.Dir(filepath.Dir(p)))
	}
	count := func() int {
		n := 0
		for _, d := range parents {
			if _, err := os.Stat(d); err == nil {
				n++
			}
		}
		return n
	}
	if n := count(); n != len(parents) || n == 0 {
		t.Fatalf("%d of the parent's %d directories exist with a container running", n, len(parents))
	}
	e.rt.Close()
	if n := count(); n != len(parents) {
		t.Fatalf("Close with a container running removed %d of the parent's %d directories", len(parents)-n, len(parents))
	}
	e.rt = e.newRuntime(t)
	if _, err := e.rt.Adopt(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := e.rt.Get("c1")
	must(t, err)
	must(t, c.Delete(context.Background()))
	e.rt.Close()
	if n := count(); n != 0 {
		t.Errorf("Close with no container left kept %d of the parent's %d directories", n, len(parents))
	}
}
