package store

import (
	"bytes"
	"context"
	"errors"
	"testing"

	berthv1 "berth/proto/berth/v1"
)

// TestDeletedNodeIsRemembered: deleting a node records its ID and when, in
// the same change; a node with that ID is never created again, whether the
// writer checks (scratch) or the log does (Apply); snapshots keep the
// record.
func TestDeletedNodeIsRemembered(t *testing.T) {
	s := New(nil, WithClock(fakeClock()))
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateNode(&berthv1.Node{Id: "n1"}) })
	w, err := s.Watch(context.Background(), s.Index())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mustUpdate(t, s, func(tx Tx) error { return tx.DeleteNode("n1") })
	var kinds []string
	for range 2 {
		e := <-w.Events()
		kinds = append(kinds, e.Kind.String()+" "+tableOf(e.Object).name)
	}
	if kinds[0] != "delete node" || kinds[1] != "create removed_node" {
		t.Fatalf("events of a node deletion: %v, want the delete and the record, in one change", kinds)
	}
	var rec *berthv1.RemovedNode
	s.View(func(tx ReadTx) { rec = tx.GetRemovedNode("n1") })
	if rec.GetId() != "n1" || !rec.GetRemovedAt().AsTime().After(t0) {
		t.Fatalf("removal record %v, want n1 with the time of removal", rec)
	}

	err = s.Update(context.Background(), func(tx Tx) error { return tx.CreateNode(&berthv1.Node{Id: "n1"}) })
	if !errors.Is(err, ErrNodeRemoved) {
		t.Fatalf("create a removed node: %v, want ErrNodeRemoved", err)
	}
	// The log's verdict is the same when the writer's check raced the removal.
	batch := &berthv1.StoreBatch{Actions: []*berthv1.StoreAction{nodes.wrap(berthv1.StoreAction_KIND_CREATE, &berthv1.Node{Id: "n1"})}}
	if err := s.Apply(s.Index()+1, batch); !errors.Is(err, ErrNodeRemoved) {
		t.Fatalf("apply a create of a removed node: %v, want ErrNodeRemoved", err)
	}
	// Other nodes are created as ever.
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateNode(&berthv1.Node{Id: "n2"}) })

	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(nil)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	r.View(func(tx ReadTx) {
		all, _ := tx.FindRemovedNodes(All)
		if len(all) != 1 || all[0].GetId() != "n1" || !all[0].GetRemovedAt().AsTime().Equal(rec.GetRemovedAt().AsTime()) {
			t.Fatalf("restored removal records %v, want n1's", all)
		}
		if tx.GetNode("n1") != nil || tx.GetNode("n2") == nil {
			t.Fatal("restored nodes differ")
		}
	})
}
