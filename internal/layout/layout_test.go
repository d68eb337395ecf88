package layout

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden maps a package (and everything under it) to imports it must not
// have, directly or indirectly. Prefixes match whole path elements.
var forbidden = map[string][]string{
	"berth/proto":         {"berth/"},
	"berth/ca":            {"berth/"},
	"berth/store":         {"berth/manager", "berth/deploy", "berth/scheduler", "berth/agent"},
	"berth/manager":       {"berth/agent"},
	"berth/scheduler":     {"berth/store", "google.golang.org/grpc"},
	"berth/deploy":        {"berth/agent", "berth/overlay"},
	"berth/agent":         {"berth/manager", "berth/store", "berth/deploy", "berth/scheduler"},
	"berth/agent/runtime": {"google.golang.org/grpc", "berth/proto"},
	"berth/agent/image":   {"berth/proto"},
	"berth/overlay":       {"berth/deploy", "berth/scheduler"},
	"berth/discovery":     {"berth/deploy", "berth/scheduler"},
}

// testOnly packages are for tests (and the demo tooling under internal/cmd).
var testOnly = []string{"berth/internal/await", "berth/internal/testimage", "berth/internal/testhost", "testing"}

func TestDependencyDirections(t *testing.T) {
	deps := listDeps(t)
	if len(deps) == 0 {
		t.Fatal("go list found no packages")
	}
	for pkg, imports := range deps {
		for owner, banned := range forbidden {
			if !under(pkg, owner) {
				continue
			}
			for _, imp := range imports {
				for _, b := range banned {
					if under(imp, b) && !under(imp, owner) {
						t.Errorf("%s imports %s: DESIGN.md forbids %s → %s", pkg, imp, owner, b)
					}
				}
			}
		}
	}
}

func TestProductionCodeAvoidsTestHelpers(t *testing.T) {
	for pkg, imports := range listDeps(t) {
		if under(pkg, "berth/internal/cmd") || isTestHelper(pkg) {
			continue
		}
		for _, imp := range imports {
			if isTestHelper(imp) {
				t.Errorf("%s (production code) imports test-only package %s", pkg, imp)
			}
		}
	}
}

func isTestHelper(pkg string) bool {
	for _, h := range testOnly {
		if under(pkg, h) {
			return true
		}
	}
	return false
}

// under reports whether pkg is p or below it; p ending in "/" matches any child.
func under(pkg, p string) bool {
	if strings.HasSuffix(p, "/") {
		return strings.HasPrefix(pkg, p)
	}
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// listDeps returns every non-test package of the module with its transitive imports.
func listDeps(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "berth/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 {
			deps[fields[0]] = fields[1:]
		}
	}
	return deps
}
