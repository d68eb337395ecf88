package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"berth/agent/image"
	"berth/internal/testimage"
)

func TestLayerLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		size, entries int64
		err           string
	}{
		{nil, image.DefaultMaxLayerSize, image.DefaultMaxLayerEntries, ""},
		{[]string{"--max-layer-size", "1.5G", "--max-layer-entries", "10"}, 3 << 29, 10, ""},
		{[]string{"--max-layer-size", "0", "--max-layer-entries", "0"}, -1, -1, ""},
		{[]string{"--max-layer-size", "lots"}, 0, 0, "--max-layer-size"},
		{[]string{"--max-layer-size", ""}, 0, 0, "--max-layer-size"},
		{[]string{"--max-layer-entries", "-3"}, 0, 0, "--max-layer-entries"},
	} {
		var l layerLimits
		f := pflag.NewFlagSet("t", pflag.ContinueOnError)
		l.register(f)
		if err := f.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		size, entries, err := l.config()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: err = %v, want one naming %s", tc.args, err, tc.err)
		case tc.err == "" && (err != nil || size != tc.size || entries != tc.entries):
			t.Errorf("%v = %d, %d, %v; want %d, %d", tc.args, size, entries, err, tc.size, tc.entries)
		}
	}
}

// TestRunRefusesLayerOverLimit pulls busybox with a layer entry limit it
// exceeds: `berth-agent run` exits 125 naming the layer, the limit and the
// flag, and leaves no layer or temp dir behind.
func TestRunRefusesLayerOverLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("berth-agent run needs root (namespaces, cgroups, mounts)")
	}
	fx := testimage.Serve(t)
	bin := buildAgent(t)
	data := t.TempDir()
	cmd := exec.Command(bin, "run", "--data-dir", data, "--rm", "-q", "--max-layer-entries", "2", fx.Busybox.Tag, "true")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 125 {
		t.Fatalf("run: %v, output %q; want exit 125", err, out)
	}
	t.Logf("output: %s", out)
	for _, want := range []string{"unpack layer sha256:", "more than 2 entries", "--max-layer-entries"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}
	for _, dir := range []string{"images/layers", "images/tmp", "images/l", "images/containers"} {
		if ents, _ := os.ReadDir(filepath.Join(data, dir)); len(ents) != 0 {
			t.Errorf("%s holds %d entries after the refused pull", dir, len(ents))
		}
	}
}
