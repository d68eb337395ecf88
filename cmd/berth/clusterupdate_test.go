package main

import (
	"strings"
	"testing"
	"time"

	"berth/internal/await"
)

// TestClusterUpdateHeartbeatPeriod: `berth cluster update
// --heartbeat-period` changes the period `cluster info` shows; a period
// out of range names the field and the fix and changes nothing.
func TestClusterUpdateHeartbeatPeriod(t *testing.T) {
	dir := startManager(t)
	await.NoError(t, 20*time.Second, func() error {
		_, err := berth(t, "--tls-dir", dir, "cluster", "info")
		return err
	}, "berth cluster info")
	out, err := berth(t, "--tls-dir", dir, "cluster", "update", "--heartbeat-period", "250ms")
	if err != nil || !strings.Contains(out, "heartbeat period: 250ms") {
		t.Fatalf("cluster update: %q, %v", out, err)
	}
	info := func() string {
		t.Helper()
		out, err := berth(t, "--tls-dir", dir, "cluster", "info")
		if err != nil {
			t.Fatalf("cluster info: %v", err)
		}
		return out
	}
	if out := info(); !strings.Contains(out, "Heartbeat:     250ms") {
		t.Fatalf("cluster info after the update:\n%s", out)
	}
	_, err = berth(t, "--tls-dir", dir, "cluster", "update", "--heartbeat-period", "1ms")
	if err == nil || !strings.Contains(err.Error(), "heartbeat_period") || !strings.Contains(err.Error(), "from 100ms to 1m0s") {
		t.Fatalf("a 1ms period: %v, want an error naming heartbeat_period and its range", err)
	}
	if out := info(); !strings.Contains(out, "Heartbeat:     250ms") {
		t.Fatalf("cluster info after a refused update:\n%s", out)
	}
	if _, err := berth(t, "--tls-dir", dir, "cluster", "update"); err == nil || !strings.Contains(err.Error(), "--heartbeat-period") {
		t.Fatalf("cluster update with no flag: %v", err)
	}
}
