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
	"berth/seccomp":       {"berth/"},
	"berth/store":         {"berth/manager", "berth/deploy", "berth/scheduler", "berth/agent"},
	"berth/manager":       {"berth/agent"},
	"berth/scheduler":     {"berth/store"},
	"berth/deploy":        {"berth/agent", "berth/overlay"},
	"berth/agent":         {"berth/manager", "berth/store", "berth/deploy", "berth/scheduler"},
	"berth/agent/runtime": {"google.golang.org/grpc", "berth/proto"},
	"berth/agent/image":   {"berth/proto"},
	"berth/overlay":       {"berth/deploy", "berth/scheduler"},
	"berth/discovery":     {"berth/deploy", "berth/scheduler"},
}

// allowed are the exceptions to forbidden: a package below an owner that
// may import what its owner must not.
var allowed = map[string][]string{
	// A promoted node runs a manager inside its agent, as Swarm's nodes
	// do; agent/promote is where the node daemon hands over to one, so it
	// links the manager and what the manager links. The agent itself
	// still must not.
	"berth/agent/promote": {"berth/manager", "berth/store", "berth/deploy", "berth/scheduler"},
}

// exempt says whether allowed lets pkg import imp.
func exempt(pkg, imp string) bool {
	for owner, ok := range allowed {
		if !under(pkg, owner) {
			continue
		}
		for _, a := range ok {
			if under(imp, a) {
				return true
			}
		}
	}
	return false
}

// forbiddenDirect are imports a package must not make itself; they may come
// in indirectly (the scheduler uses proto's types, whose package also holds
// the generated gRPC stubs, but it must not speak gRPC).
var forbiddenDirect = map[string][]string{
	"berth/scheduler": {"google.golang.org/grpc", "time"},
}

// testOnly packages are for tests (and the demo tooling under internal/cmd).
// "testing" is checked among direct imports only: hashicorp/raft imports it.
var testOnly = []string{"berth/internal/await", "berth/internal/cputime", "berth/internal/metrics/metricstest", "berth/internal/escapetest", "berth/internal/testimage", "berth/internal/testhost", "berth/internal/e2ecluster", "berth/internal/clitest", "berth/internal/etcdtest", "berth/internal/faults", "testing"}

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
					if under(imp, b) && !under(imp, owner) && !exempt(pkg, imp) {
						t.Errorf("%s imports %s: DESIGN.md forbids %s → %s", pkg, imp, owner, b)
					}
				}
			}
		}
	}
}

func TestDirectImports(t *testing.T) {
	imports := listPackages(t, "{{.ImportPath}} {{join .Imports \" \"}}")
	for owner, banned := range forbiddenDirect {
		for pkg, imps := range imports {
			if !under(pkg, owner) {
				continue
			}
			for _, imp := range imps {
				for _, b := range banned {
					if under(imp, b) {
						t.Errorf("%s imports %s itself: DESIGN.md forbids it", pkg, imp)
					}
				}
			}
		}
	}
}

func TestProductionCodeAvoidsTestHelpers(t *testing.T) {
	direct := listPackages(t, "{{.ImportPath}} {{join .Imports \" \"}}")
	for pkg, imports := range listDeps(t) {
		if !contains(direct[pkg], "testing") {
			imports = without(imports, "testing")
		}
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
	return listPackages(t, `{{.ImportPath}} {{join .Deps " "}}`)
}

// listPackages runs go list with format over the module's packages and
// splits each line into a package and its fields.
func listPackages(t *testing.T, format string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, "berth/...").Output()
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

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	var out []string
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}

// initAllowed are the only non-standard packages the container init
// (berth-init, a PID 1 in every container) may link: its memory and
// start time are paid per container.
var initAllowed = []string{"berth/internal/cmd/berth-init", "berth/agent/runtime/initproc", "berth/agent/runtime/initconf", "golang.org/x/sys/unix"}

// TestInitLinksStdlibAndUnixOnly keeps berth-init lean: the standard
// library, x/sys/unix and the init's own two packages, nothing else of
// ours (no gRPC, protobuf, cgroups, seccomp compiler, slog).
func TestInitLinksStdlibAndUnixOnly(t *testing.T) {
	deps := listDeps(t)
	imports, ok := deps["berth/internal/cmd/berth-init"]
	if !ok {
		t.Fatal("go list did not find berth/internal/cmd/berth-init")
	}
	for _, imp := range imports {
		first, _, _ := strings.Cut(imp, "/")
		if !strings.Contains(first, ".") && first != "berth" {
			if imp == "log/slog" {
				t.Errorf("berth-init links %s", imp)
			}
			continue // the standard library
		}
		if !contains(initAllowed, imp) {
			t.Errorf("berth-init links %s; it may link the standard library and %v only", imp, initAllowed)
		}
	}
}
