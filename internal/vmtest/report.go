package vmtest

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The guest's init marks the console with these lines (guest/init.sh).
const (
	markBooted = "=== vmtest booted"
	markBegin  = "=== vmtest begin "
	markEnd    = "=== vmtest end "
	markError  = "=== vmtest error "
	markDone   = "=== vmtest done"
)

// SuiteResult is how one test binary did in the VM.
type SuiteResult struct {
	Name     string
	Code     int // the test binary's exit code
	Duration time.Duration
	Passed   int
	Failed   []string // names of failed top-level tests
	Skipped  []string // "TestX: reason" for each skipped top-level test
}

// Report is what the VM said on its console.
type Report struct {
	Suites []SuiteResult
	Errors []string // set-up failures the init reported
	Booted bool     // the init started
	Done   bool     // the init reached its end
}

// reader follows the console line by line, building a Report and writing
// a summary per suite to progress: failures in full, passes in one line.
type reader struct {
	progress io.Writer
	verbose  bool
	now      func() time.Time
	booted   func() // called when the init starts

	report  Report
	cur     *SuiteResult
	started time.Time
	section []string
	lastLog string // the last log line of the running test
}

func (r *reader) line(l string) {
	l = strings.TrimRight(l, "\r")
	if r.verbose {
		fmt.Fprintln(r.progress, l)
	}
	switch {
	case l == markBooted:
		r.report.Booted = true
		if r.booted != nil {
			r.booted()
		}
	case strings.HasPrefix(l, markBegin):
		r.begin(strings.TrimSpace(strings.TrimPrefix(l, markBegin)))
	case strings.HasPrefix(l, markEnd):
		r.end(strings.TrimPrefix(l, markEnd))
	case strings.HasPrefix(l, markError):
		msg := strings.TrimPrefix(l, markError)
		r.report.Errors = append(r.report.Errors, msg)
		fmt.Fprintf(r.progress, "vm: %s\n", msg)
	case l == markDone:
		r.report.Done = true
	case r.cur != nil:
		r.testLine(l)
	}
}

func (r *reader) begin(name string) {
	r.cur = &SuiteResult{Name: name}
	r.started = r.now()
	r.section = nil
	if !r.verbose {
		fmt.Fprintf(r.progress, "vm: running %s\n", name)
	}
}

// end takes "NAME rc=N".
func (r *reader) end(rest string) {
	if r.cur == nil {
		return
	}
	s := r.cur
	s.Code = -1
	if _, rc, ok := strings.Cut(rest, " rc="); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(rc)); err == nil {
			s.Code = n
		}
	}
	s.Duration = r.now().Sub(r.started).Round(100 * time.Millisecond)
	r.report.Suites = append(r.report.Suites, *s)
	r.cur = nil
	if s.Code != 0 && !r.verbose {
		fmt.Fprintf(r.progress, "--- output of %s ---\n%s\n", s.Name, strings.Join(r.section, "\n"))
	}
	fmt.Fprintln(r.progress, s.summary())
	for _, sk := range s.Skipped {
		fmt.Fprintf(r.progress, "        skipped %s\n", sk)
	}
}

// testLine counts `go test -v` results of top-level tests. A test's log
// lines (indented) come before its "--- SKIP" line: the last one is taken
// as the reason.
func (r *reader) testLine(l string) {
	r.section = append(r.section, l)
	if strings.HasPrefix(l, "=== RUN") {
		r.lastLog = ""
	} else if strings.HasPrefix(l, "    ") {
		r.lastLog = strings.TrimSpace(l)
	}
	f := strings.Fields(l)
	if len(f) < 3 || f[0] != "---" || l[0] != '-' {
		return
	}
	switch f[1] {
	case "PASS:":
		r.cur.Passed++
	case "FAIL:":
		r.cur.Failed = append(r.cur.Failed, f[2])
	case "SKIP:":
		reason := r.lastLog
		if reason == "" {
			reason = "(no reason given)"
		}
		r.cur.Skipped = append(r.cur.Skipped, f[2]+": "+reason)
	}
}

func (s SuiteResult) summary() string {
	status := "ok  "
	if s.Code != 0 {
		status = "FAIL"
	}
	line := fmt.Sprintf("%s %-8s %7s  %d passed, %d failed, %d skipped", status, s.Name, s.Duration, s.Passed, len(s.Failed), len(s.Skipped))
	if s.Code != 0 {
		line += fmt.Sprintf(" (exit %d)", s.Code)
		if len(s.Failed) > 0 {
			line += ": " + strings.Join(s.Failed, " ")
		}
	}
	return line
}

// Err says why the run failed, or nil: a suite failed, the init reported
// a set-up error, or it never reached its end (a kernel panic, a hang),
// or a planned suite never reported.
func (rep Report) Err(planned []Suite) error {
	var bad []string
	for _, s := range rep.Suites {
		if s.Code != 0 {
			bad = append(bad, s.Name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("cgroup v2 VM: tests failed in %s", strings.Join(bad, ", "))
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("cgroup v2 VM: %s", strings.Join(rep.Errors, "; "))
	}
	if !rep.Done {
		return fmt.Errorf("cgroup v2 VM: the init never finished (see the console log)")
	}
	if len(rep.Suites) != len(planned) {
		return fmt.Errorf("cgroup v2 VM: %d of %d suites reported", len(rep.Suites), len(planned))
	}
	return nil
}
