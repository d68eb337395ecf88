package runtime

import (
	"regexp"
	"strings"
	"testing"
)

// TestIsNameMatchesThePattern checks the hand-written check against the
// regexps it replaced, on names at and around every edge.
func TestIsNameMatchesThePattern(t *testing.T) {
	id := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	volume := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	names := []string{"", "a", "Z9", "a.b_c-d", ".a", "-a", "_a", "a/b", "a b", "é", "a\x00",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "web.1.x7", "0", "a..", "a\n"}
	for _, n := range names {
		if got, want := isName(n, 128), id.MatchString(n); got != want {
			t.Errorf("isName(%q, 128) = %v, the ID pattern says %v", n, got, want)
		}
		if got, want := isName(n, 0), volume.MatchString(n); got != want {
			t.Errorf("isName(%q, 0) = %v, the volume pattern says %v", n, got, want)
		}
	}
}
