package runtime

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestPeekShowsWithoutAdopting: another process (berth-agent ps) reads the
// node's containers, labels and state from their records, and takes
// none of them from the runtime that runs them.
func TestPeekShowsWithoutAdopting(t *testing.T) {
	e := newEnv(t)
	s := e.spec("labelled", "sleep", "1000")
	s.Labels = map[string]string{"app": "web", "empty": ""}
	e.run(t, s)
	e.wait(t, e.run(t, e.spec("finished", "sh", "-c", "exit 4")))

	other := e.newRuntime(t)
	infos, err := other.Peek()
	must(t, err)
	if len(infos) != 2 || infos[0].ID != "finished" || infos[1].ID != "labelled" {
		t.Fatalf("Peek = %+v, want finished and labelled", infos)
	}
	if f := infos[0]; f.Running || f.Exit == nil || f.Exit.Code != 4 {
		t.Errorf("finished: running %v, exit %+v; want exited 4", f.Running, f.Exit)
	}
	if l := infos[1]; !l.Running || l.Exit != nil || !maps.Equal(l.Spec.Labels, s.Labels) {
		t.Errorf("labelled: running %v, exit %+v, labels %v; want running with %v", l.Running, l.Exit, l.Spec.Labels, s.Labels)
	}
	if n := len(other.List()); n != 0 {
		t.Errorf("Peek adopted %d containers", n)
	}
	bad := e.spec("bad", "true")
	bad.Labels = map[string]string{"": "v"}
	if err := bad.Validate(); err == nil {
		t.Error("a label without a key was accepted")
	}
}

// TestPeekAndHasStateFindTheOldLayout: a container an agent before the
// state tmpfs started, recorded beside its logs, is peeked too, and
// HasState says a data dir with nothing recorded has nothing to peek.
func TestPeekAndHasStateFindTheOldLayout(t *testing.T) {
	e := newEnv(t)
	if HasState(e.dir) {
		t.Error("HasState of a dir no runtime ever used")
	}
	if !HasState(e.rt.cfg.DataDir) {
		t.Error("HasState of a runtime's data dir")
	}
	c := e.run(t, e.spec("old", "sleep", "1000"))
	data, err := os.ReadFile(filepath.Join(e.rt.containerDir("old"), stateFile))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(e.rt.logDir("old"), stateFile), data, 0o600))
	must(t, os.RemoveAll(e.rt.containerDir("old")))
	infos, err := e.newRuntime(t).Peek()
	must(t, err)
	if len(infos) != 1 || infos[0].ID != "old" || !infos[0].Running || infos[0].Pid != c.Pid() {
		t.Fatalf("Peek = %+v, want old running", infos)
	}
}
