package main

import (
	"testing"

	"berth/internal/clitest"
)

// TestFlagHelp: every flag's help shows a one-word value name, and no
// switch shows [=true|false].
func TestFlagHelp(t *testing.T) {
	clitest.CheckFlagHelp(t, newRootCmd())
}
