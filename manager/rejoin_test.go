package manager

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// TestRaftJoinResumesAfterRestart: a manager that got its certificate but
// stopped before Raft added it (a crash between the two) joins Raft on its
// next start, through the managers it first joined, without --join; once
// added it does not ask again.
func TestRaftJoinResumesAfterRestart(t *testing.T) {
	etcdtest.SkipOnEtcd(t, "tests the Raft join a restart must finish; on etcd the CA's join registers the manager at once")
	c := newTestCluster(t, 1)
	tok := joinToken(t, c.mgrs[0].control(), pb.NodeSpec_ROLE_MANAGER)
	tm := newTestManager(t, "m1")
	tm.joins(c.mgrs[0], tok)

	// The first run: the CA join only, as a run that stopped before Raft
	// added it leaves the data dir.
	first, err := New(tm.cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.loadOrCreateIdentity(ctxFor(t, settle))
	if err != nil {
		t.Fatalf("join the CA: %v", err)
	}
	if !id.joined {
		t.Fatal("a first join does not join Raft")
	}

	tm.cfg.Join, tm.cfg.Token = nil, ""
	tm.mustStart()
	if tm.m.NodeID() != id.creds.Identity().NodeID {
		t.Fatalf("restart took node ID %s, the first run got %s", tm.m.NodeID(), id.creds.Identity().NodeID)
	}
	c.mgrs = append(c.mgrs, tm)
	c.waitMembers(2)

	// A later start is a member already: it does not ask to join, and
	// no join is left pending.
	tm.stop()
	tm.mustStart()
	if tm.m.id.joined {
		t.Fatal("a manager Raft had added asks to join again")
	}
	if _, err := os.Stat(tm.m.path(raftJoinFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a raft join is still pending after Raft added the manager: %v", err)
	}
	c.waitMembers(2)
}
