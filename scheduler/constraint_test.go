package scheduler

import (
	"strings"
	"testing"
)

func TestParseConstraint(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Constraint
		wantErr string
	}{
		{in: "node.role==manager", want: Constraint{"node.role", true, "manager"}},
		{in: " node.labels.Zone != b ", want: Constraint{"node.labels.Zone", false, "b"}},
		{in: "node.HOSTNAME==web-1", want: Constraint{"node.hostname", true, "web-1"}},
		{in: "node.platform.arch==amd64", want: Constraint{"node.platform.arch", true, "amd64"}},
		{in: "node.role=manager", wantErr: "want KEY==VALUE"},
		{in: "node.color==red", wantErr: `unknown key "node.color"`},
		{in: "node.labels.==x", wantErr: "unknown key"},
		{in: "node.role==boss", wantErr: "manager or worker"},
		{in: "node.id==", wantErr: "want KEY==VALUE"},
	} {
		got, err := ParseConstraint(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseConstraint(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseConstraint(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseConstraint: whatever parses renders back to the same constraint.
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"node.role==manager", " node.labels.Zone != b ", "node.id==a==b", "node.platform.os!=linux", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			return
		}
		again, err := ParseConstraint(c.String())
		if err != nil || again != c {
			t.Fatalf("%q parsed to %+v, which renders %q and parses to %+v, %v", s, c, c.String(), again, err)
		}
	})
}
