// Package version holds the build's version, set by the linker
// (-X berth/internal/version.Version=...).
package version

import (
	"fmt"
	"runtime"
)

// Version is the berth release or git revision this binary was built from.
var Version = "dev"

// String describes the build: version, Go version and platform.
func String(binary string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", binary, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
