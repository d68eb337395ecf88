package agent

import (
	"testing"
	"time"

	"berth/internal/await"
)

// TestAgentTakesTheHeartbeatPeriodOfEachAnswer: the period a heartbeat's
// answer names paces the agent from its next heartbeat on, within the one
// session (`berth cluster update --heartbeat-period` reaches agents so).
func TestAgentTakesTheHeartbeatPeriodOfEachAnswer(t *testing.T) {
	needRoot(t)
	c := newFakeCluster(t)
	c.heartbeat = 2 * time.Second
	m := startFakeManager(t, c, "mgr1")
	startAgent(t, testDir(t), []string{m.addr}, c.token.String())
	beats := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.beats
	}
	await.True(t, 20*time.Second, func() bool { return beats() >= 1 }, "the agent heartbeats at the session's period")

	c.mu.Lock()
	c.heartbeat = 50 * time.Millisecond
	sessions := len(c.sessions)
	from := c.beats
	c.mu.Unlock()
	// At the old period the agent could not send 20 in the wait below
	// (10 s / 2 s); at the new one it sends them in about a second.
	await.True(t, 10*time.Second, func() bool { return beats() >= from+20 }, "the agent heartbeats at the period of the last answer")
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) != sessions {
		t.Fatalf("the agent opened %d new sessions; a new period needs none", len(c.sessions)-sessions)
	}
}
