package runtime

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestRunOfATakenIDLeavesTheOtherAlone: a second Runtime on the same data
// dir (another berth-agent run) starting a container whose ID is taken
// gets ErrExists and leaves the running container's state alone; before,
// its clean-up removed that container's state directory.
func TestRunOfATakenIDLeavesTheOtherAlone(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("taken", "sleep", "1000"))
	other := e.newRuntime(t)
	defer other.Close()
	if !other.Taken("taken") || other.Taken("free") {
		t.Errorf("Taken(taken) = %v, Taken(free) = %v", other.Taken("taken"), other.Taken("free"))
	}
	if _, err := other.Run(context.Background(), e.spec("taken", "true")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Run = %v, want ErrExists", err)
	}
	if _, err := os.Stat(e.rt.containerDir("taken")); err != nil {
		t.Fatalf("the running container's state is gone: %v", err)
	}
	must(t, c.Delete(context.Background()))
}
