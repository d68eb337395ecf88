package initproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogSinkWritesRecords: output becomes one record a line, a rest
// without a newline a partial record, and a record is never split across
// rotated files.
func TestLogSinkWritesRecords(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rot, err := newRotator(int(d.Fd()), 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	sink := newLogSink(rot, 1)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	sink.write(streamStdout, t0, []byte("one\ntwo\npart"))
	sink.write(streamStderr, t0, []byte("oops\n"))
	rot.f.Close()
	ts := t0.Format(time.RFC3339Nano)
	var all []string
	for _, f := range []string{logName + ".2", logName + ".1", logName} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(b) > 100 {
			t.Errorf("%s is %d bytes, over 100", f, len(b))
		}
		if len(b) > 0 && !strings.HasSuffix(string(b), "\n") {
			t.Errorf("%s ends within a record: %q", f, b)
		}
		all = append(all, string(b))
	}
	want := ts + " stdout F one\n" + ts + " stdout F two\n" + ts + " stdout P part\n" + ts + " stderr F oops\n"
	if got := strings.Join(all, ""); got != want {
		t.Fatalf("records:\n%s\nwant:\n%s", got, want)
	}
}
