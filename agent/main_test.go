package agent

import (
	"os"
	"testing"

	"berth/agent/runtime"
)

// TestMain lets the test binary serve as the container init, as
// berth-agent's main does.
func TestMain(m *testing.M) {
	if runtime.IsInit() {
		runtime.RunInit()
	}
	os.Exit(m.Run())
}
