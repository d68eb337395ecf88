package agent

import (
	"os"
	"testing"

	"berth/agent/runtime/initproc"
)

// TestMain lets the test binary serve as the container init when it was
// built without the dedicated one, as berth-agent's main does.
func TestMain(m *testing.M) {
	if initproc.IsInit() {
		initproc.Main()
	}
	os.Exit(m.Run())
}
