package discovery

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"berth/internal/await"
)

func TestSyncKeyringOrderAndDrops(t *testing.T) {
	t.Parallel()
	k1, k2, k3, k4 := testKey(t), testKey(t), testKey(t), testKey(t)
	names := map[string]string{string(k1): "k1", string(k2): "k2", string(k3): "k3", string(k4): "k4"}
	for _, tc := range []struct {
		name    string
		have    [][]byte // primary first
		primary []byte
		accept  [][]byte
		want    string
	}{
		{"install the next key", [][]byte{k1}, k1, [][]byte{k2}, "[k1 k2]"},
		{"make it primary", [][]byte{k1, k2}, k2, [][]byte{k1}, "[k2 k1]"},
		{"drop the old key", [][]byte{k2, k1}, k2, nil, "[k2]"},
		{"a late member jumps two steps", [][]byte{k1}, k3, [][]byte{k2}, "[k3 k2]"},
		{"a stale key in the middle", [][]byte{k1, k4, k2}, k2, [][]byte{k1}, "[k2 k1]"},
		{"nothing changes", [][]byte{k2, k1}, k2, [][]byte{k1}, "[k2 k1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := newKeyring(tc.have[0], tc.have[1:])
			if err != nil {
				t.Fatal(err)
			}
			if err := syncKeyring(k, tc.primary, tc.accept); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, key := range k.GetKeys() {
				got = append(got, names[string(key)])
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("keyring %v, want %s", got, tc.want)
			}
		})
	}
	g, err := NewGossip(GossipConfig{NodeID: "n", Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetKeys(k2, [][]byte{k1[:16]}); err == nil {
		t.Fatal("SetKeys took a 16-byte key")
	}
	if p, a := g.Keys(); !bytes.Equal(p, k1) || len(a) != 0 {
		t.Fatal("a refused SetKeys changed the keys")
	}
}

// TestKeyRotationWithoutABlip: a cluster rotates its key in three rounds
// (install, make primary, drop), one member after another, with members
// on different rounds gossiping meanwhile: nobody is declared dead or
// gone, and afterwards the old key no longer joins while the new one does.
func TestKeyRotationWithoutABlip(t *testing.T) {
	t.Parallel()
	old, next := testKey(t), testKey(t)
	ms := startCluster(t, 4, old, nil)
	// spoken has member i gossip something new and waits until every
	// other member heard it: what i encrypts, all of them decrypt.
	round := 0
	spoken := func(i int) {
		t.Helper()
		round++
		mark := fmt.Sprint(round)
		// The broadcast gets the wait's bound: the test timings' own
		// (short) one ran out on a loaded CI box.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := ms[i].g.SetMeta(ctx, map[string]string{"round": mark}); err != nil {
			t.Fatal(err)
		}
		await.True(t, 5*time.Second, func() bool {
			for j, m := range ms {
				if j == i {
					continue
				}
				if got := memberMeta(m, ms[i].g.NodeID()); got != mark {
					return false
				}
			}
			return true
		}, "every member hears node-%d's round %s", i, mark)
	}
	for _, step := range []struct {
		primary []byte
		accept  [][]byte
	}{{old, [][]byte{next}}, {next, [][]byte{old}}, {next, nil}} {
		for i, m := range ms {
			if err := m.g.SetKeys(step.primary, step.accept); err != nil {
				t.Fatal(err)
			}
			spoken(i)
		}
	}
	for _, m := range ms {
		for _, kind := range []EventKind{EventDead, EventLeave} {
			for j := range ms {
				if e, ok := m.saw(fmt.Sprintf("node-%d", j), kind); ok {
					t.Fatalf("%s saw %s %s during the rotation", m.g.NodeID(), e.NodeID, kind)
				}
			}
		}
	}
	waitAlive(t, ms, 4)

	stale := startMember(t, "removed", old, nil)
	if _, err := stale.g.Join(t.Context(), []string{ms[0].g.Addr()}); err == nil {
		t.Fatal("a member with the old key joined after the rotation")
	}
	fresh := startMember(t, "fresh", next, nil)
	if _, err := fresh.g.Join(t.Context(), []string{ms[0].g.Addr()}); err != nil {
		t.Fatalf("a member with the new key: %v", err)
	}
}

// TestDroppingAKeyTooEarlyIsABlip is the rotation's control: a member that
// still encrypts with a key the others dropped is declared dead — what the
// three rounds avoid.
func TestDroppingAKeyTooEarlyIsABlip(t *testing.T) {
	t.Parallel()
	old, next := testKey(t), testKey(t)
	ms := startCluster(t, 3, old, nil)
	for _, m := range ms[:2] {
		if err := m.g.SetKeys(next, nil); err != nil {
			t.Fatal(err)
		}
	}
	await.True(t, 10*time.Second, func() bool {
		_, ok := ms[0].saw("node-2", EventDead)
		return ok
	}, "node-0 declares node-2, still on the old key, dead")
}

// memberMeta is the round a member last heard id announce.
func memberMeta(m *member, id string) string {
	for _, x := range m.g.Members() {
		if x.NodeID == id {
			return x.Meta["round"]
		}
	}
	return ""
}
