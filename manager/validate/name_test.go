package validate

import (
	"regexp"
	"strings"
	"testing"
)

// TestValidNameMatchesThePattern checks the hand-written name check
// against the regexp it replaced.
func TestValidNameMatchesThePattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	for _, n := range []string{"", "a", "web", ".a", "-a", "_a", "a.b_c-d", "a/b", "a b", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a\n"} {
		if got, want := validName(n), re.MatchString(n); got != want {
			t.Errorf("validName(%q) = %v, the pattern says %v", n, got, want)
		}
	}
}
