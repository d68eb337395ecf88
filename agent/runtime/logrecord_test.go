package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogRecordsRead reads records as the init writes them: lines keep
// their stream and time, the parts of a line are joined, --since and
// --tail select, and rotated files are read first.
func TestLogRecordsRead(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	files := map[string]string{
		logName + ".2": at(0) + " stdout F one\n" + at(0) + " stdout F two\n",
		logName + ".1": at(0) + " stdout P part\n" + at(time.Second) + " stderr F oops\n",
		logName:        at(2*time.Second) + " stdout F ial\n" + at(2*time.Second) + " stdout F last\n",
	}
	for name, data := range files {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600))
	}
	read := func(opts LogOptions) []LogEntry {
		var out []LogEntry
		lr := &logReader{opts: opts, fn: func(e LogEntry) error { out = append(out, e); return nil }}
		if opts.Tail >= 0 {
			lr.ring = []LogEntry{}
		}
		for _, f := range []string{logName + ".2", logName + ".1", logName} {
			must(t, lr.readFile(filepath.Join(dir, f)))
		}
		must(t, lr.flushPartial())
		must(t, lr.flushTail())
		return out
	}
	all := read(LogOptions{Tail: -1})
	var text strings.Builder
	for _, e := range all {
		text.Write(e.Data)
	}
	if text.String() != "one\ntwo\noops\npartial\nlast\n" {
		t.Fatalf("read back %q", text.String())
	}
	// The parts of a line are joined (with the time of the first), the
	// other stream's line in between comes first.
	if len(all) != 5 || !all[0].Time.Equal(t0) || all[0].Stderr || !all[2].Stderr || string(all[3].Data) != "partial\n" || !all[3].Time.Equal(t0) {
		t.Fatalf("entries: %+v", all)
	}
	since := read(LogOptions{Tail: -1, Since: t0.Add(time.Second)})
	if len(since) != 2 || string(since[0].Data) != "oops\n" {
		t.Fatalf("since: %+v", since)
	}
	tail := read(LogOptions{Tail: 2})
	if len(tail) != 2 || string(tail[0].Data) != "partial\n" || string(tail[1].Data) != "last\n" {
		t.Fatalf("tail 2: %+v", tail)
	}
	if none := read(LogOptions{Tail: 0}); len(none) != 0 {
		t.Fatalf("tail 0: %+v", none)
	}
}

// TestLogLinesOfAnOlderInit: a line that is not a record (written before
// records) is read whole.
func TestLogLinesOfAnOlderInit(t *testing.T) {
	e := parseRecord([]byte("plain output\n"))
	if string(e.Data) != "plain output\n" || !e.Time.IsZero() || e.Stderr {
		t.Fatalf("%+v", e)
	}
}

// TestContainerLogStreamsAndTimes: a real container's stdout and stderr
// are told apart, stamped with the time they were written.
func TestContainerLogStreamsAndTimes(t *testing.T) {
	e := newEnv(t)
	before := time.Now()
	c := e.run(t, e.spec("streams", "sh", "-c", "echo out; echo err >&2; echo out2"))
	e.wait(t, c)
	var got []LogEntry
	must(t, e.rt.LogEntries(context.Background(), "streams", LogOptions{Tail: -1}, func(le LogEntry) error {
		got = append(got, le)
		return nil
	}))
	var out, errs []string
	for _, le := range got {
		if le.Time.Before(before.Add(-time.Second)) || le.Time.After(time.Now()) {
			t.Errorf("line %q stamped %v, outside the run", le.Data, le.Time)
		}
		if le.Stderr {
			errs = append(errs, string(le.Data))
		} else {
			out = append(out, string(le.Data))
		}
	}
	if strings.Join(out, "") != "out\nout2\n" || strings.Join(errs, "") != "err\n" {
		t.Fatalf("stdout %q, stderr %q", out, errs)
	}
}

// TestLogsPassPartsOfLines: Logs (berth-agent run) shows output without
// a newline as soon as it is written.
func TestLogsPassPartsOfLines(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("prompt", "sh", "-c", "printf 'name? '; sleep 1000"))
	defer c.Kill(9)
	var out syncWriter
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.rt.Logs(ctx, "prompt", true, &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != "name? " && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if out.String() != "name? " {
		t.Fatalf("followed %q, want the prompt before its line ends", out.String())
	}
}
