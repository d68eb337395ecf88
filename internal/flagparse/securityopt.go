package flagparse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// SecurityOpts reads --security-opt values as Docker's CLI does: the FILE
// of seccomp=FILE is read and sent as compact JSON in its place, while
// seccomp=unconfined and seccomp=builtin, and every other option, go as
// typed (the receiver decides which options it supports).
func SecurityOpts(opts []string) ([]string, error) {
	out := make([]string, 0, len(opts))
	for _, o := range opts {
		v, ok := strings.CutPrefix(o, "seccomp=")
		if !ok || v == "unconfined" || v == "builtin" {
			out = append(out, o)
			continue
		}
		data, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("--security-opt %q: read the seccomp profile: %w", o, err)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, data); err != nil {
			return nil, fmt.Errorf("--security-opt %q: the seccomp profile is not JSON: %w", o, err)
		}
		out = append(out, "seccomp="+b.String())
	}
	return out, nil
}
