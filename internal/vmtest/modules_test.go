package vmtest

import (
	"reflect"
	"testing"
)

func TestSoftPre(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want []string
	}{
		{"pre: crc32c", []string{"crc32c"}},
		{"pre: a b post: c", []string{"a", "b"}},
		{"post: c pre: d", []string{"d"}},
		{"post: c", nil},
	} {
		if got := softPre(tc.val); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("softPre(%q) = %q, want %q", tc.val, got, tc.want)
		}
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel", "nf-tables": "nf_tables", "overlay": "overlay"} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}
