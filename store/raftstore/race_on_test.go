//go:build race

package raftstore

// raceEnabled: the race detector slows Raft and BoltDB about fivefold.
const raceEnabled = true
