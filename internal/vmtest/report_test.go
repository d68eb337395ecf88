package vmtest

import (
	"strings"
	"testing"
	"time"
)

func read(t *testing.T, console string) (Report, string) {
	t.Helper()
	var out strings.Builder
	r := &reader{progress: &out, now: func() time.Time { return time.Time{} }}
	for _, l := range strings.Split(console, "\n") {
		r.line(l + "\r") // the serial console ends lines with CR LF
	}
	return r.report, out.String()
}

func TestReportCountsPassesSkipsAndFailures(t *testing.T) {
	rep, out := read(t, `=== vmtest booted
[    3.1] a kernel line outside any suite
=== vmtest begin runtime
=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
    b_test.go:9: needs a v1 host
--- SKIP: TestB (0.00s)
=== RUN   TestC
=== RUN   TestC/sub
    c_test.go:20: memory.max = "max", want 16777216
    --- FAIL: TestC/sub (0.00s)
--- FAIL: TestC (0.02s)
FAIL

=== vmtest end runtime rc=1
=== vmtest done`)
	if len(rep.Suites) != 1 || !rep.Booted || !rep.Done {
		t.Fatalf("report %+v", rep)
	}
	s := rep.Suites[0]
	if s.Code != 1 || s.Passed != 1 || len(s.Failed) != 1 || s.Failed[0] != "TestC" {
		t.Fatalf("suite %+v", s)
	}
	if len(s.Skipped) != 1 || s.Skipped[0] != "TestB: b_test.go:9: needs a v1 host" {
		t.Fatalf("skips %q", s.Skipped)
	}
	if !strings.Contains(out, `memory.max = "max"`) || !strings.Contains(out, "FAIL runtime") {
		t.Fatalf("a failed suite's output is not shown in full:\n%s", out)
	}
	if err := rep.Err([]Suite{{Name: "runtime"}}); err == nil || !strings.Contains(err.Error(), "runtime") {
		t.Fatalf("Err = %v, want the failed suite named", err)
	}
}

func TestReportErrors(t *testing.T) {
	planned := []Suite{{Name: "cgroups"}, {Name: "runtime"}}
	for _, tc := range []struct {
		console, want string
	}{
		{"=== vmtest booted\n=== vmtest begin cgroups\n--- PASS: TestA (0.00s)", "never finished"},
		{"=== vmtest booted\n=== vmtest error a cgroup v1 hierarchy is mounted\n=== vmtest done", "cgroup v1"},
		{"=== vmtest begin cgroups\n=== vmtest end cgroups rc=0\n=== vmtest done", "1 of 2 suites"},
		{"=== vmtest begin cgroups\n=== vmtest end cgroups rc=0\n=== vmtest begin runtime\n=== vmtest end runtime rc=0\n=== vmtest done", ""},
	} {
		rep, _ := read(t, tc.console)
		err := rep.Err(planned)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("console %q: Err = %v, want %q", tc.console, err, tc.want)
		}
	}
}
