package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		flags   Flags
		wantErr string
	}{
		{Flags{"text", "info"}, ""},
		{Flags{"json", "debug"}, ""},
		{Flags{"xml", "info"}, "--log-format \"xml\""},
		{Flags{"text", "loud"}, "--log-level \"loud\""},
	} {
		_, err := tc.flags.New(&bytes.Buffer{})
		if tc.wantErr == "" && err != nil {
			t.Errorf("%+v: unexpected error %v", tc.flags, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: error %v, want one mentioning %s", tc.flags, err, tc.wantErr)
		}
	}
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	log, err := Flags{Format: "json", Level: "warn"}.New(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "node", "n1")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("want one JSON record, got %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["node"] != "n1" {
		t.Fatalf("record %v", rec)
	}
}
