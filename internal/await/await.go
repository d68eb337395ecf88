// Package await lets tests wait for a condition with a deadline instead of
// sleeping. It is for tests only; production code must not import it.
package await

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 20 * time.Millisecond

// True polls cond until it returns true or timeout passes, then fails the
// test with the message built from format and args.
func True(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(Interval)
	}
}

// NoError polls fn until it returns nil or timeout passes, then fails the
// test with the last error.
func NoError(t testing.TB, timeout time.Duration, fn func() error, format string, args ...any) {
	t.Helper()
	var last error
	True(t, timeout, func() bool { last = fn(); return last == nil }, format+": %v", append(args, lastErr{&last})...)
}

// lastErr defers reading the error until the failure message is formatted.
type lastErr struct{ err *error }

func (l lastErr) String() string {
	if *l.err == nil {
		return "<nil>"
	}
	return (*l.err).Error()
}
