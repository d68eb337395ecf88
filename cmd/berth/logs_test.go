package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"2026-01-02T03:04:05Z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02":           time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"1700000000":           time.Unix(1700000000, 0),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("parseSince(yesterday) took it")
	}
	o := &logsOpts{tail: "-3"}
	if _, err := o.request("web", now); err == nil {
		t.Error("--tail -3 was taken")
	}
}

func TestLogPrinterPrefixesEveryLine(t *testing.T) {
	var out, errOut bytes.Buffer
	p := &logPrinter{o: &logsOpts{timestamps: true}, out: &out, errOut: &errOut, service: "web",
		hosts: map[string]string{"n1": "host1"}, atStart: map[string]bool{}}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	ctx := context.Background()
	p.print(ctx, &pb.LogMessage{TaskId: "abcdefghijklmnop", NodeId: "n1", Slot: 2, Data: []byte("one\ntw"), TimestampUnixNano: ts})
	p.print(ctx, &pb.LogMessage{TaskId: "abcdefghijklmnop", NodeId: "n1", Slot: 2, Data: []byte("o\n"), TimestampUnixNano: ts})
	p.print(ctx, &pb.LogMessage{TaskId: "zz", NodeId: "n1", Slot: 3, Error: "node n1 has no session"})
	want := "web.2.abcdefghijkl@host1 | 2026-01-02T03:04:05Z one\nweb.2.abcdefghijkl@host1 | 2026-01-02T03:04:05Z two\n"
	if out.String() != want {
		t.Errorf("printed\n%q\nwant\n%q", out.String(), want)
	}
	if errOut.String() != "berth: logs of web.3.zz@host1: node n1 has no session\n" {
		t.Errorf("error line %q", errOut.String())
	}
}
