package store

import (
	"context"
	"errors"
	"testing"

	berthv1 "berth/proto/berth/v1"
)

// TestCheckJudgesAsApplyWithoutWriting: Check gives Apply's verdict on the
// current state and changes nothing, not even the batch it checks.
func TestCheckJudgesAsApplyWithoutWriting(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(service("s1", "web")) })
	index := s.Index()
	stale := &berthv1.StoreBatch{Actions: []*berthv1.StoreAction{{
		Kind: berthv1.StoreAction_KIND_UPDATE, Target: &berthv1.StoreAction_Service{Service: service("s1", "web")},
	}}}
	if _, err := s.Check(stale); !errors.Is(err, ErrSequenceConflict) {
		t.Fatalf("an update at version 0: %v, want ErrSequenceConflict", err)
	}
	fresh := &berthv1.StoreBatch{Actions: []*berthv1.StoreAction{{
		Kind: berthv1.StoreAction_KIND_CREATE, Target: &berthv1.StoreAction_Service{Service: service("s2", "db")},
	}}}
	got, err := s.Check(fresh)
	if err != nil || got != index {
		t.Fatalf("a fitting create: index %d, %v; want %d, nil", got, err, index)
	}
	if s.Index() != index || fresh.Actions[0].GetService().GetMeta() != nil {
		t.Fatal("Check changed the store or the batch")
	}
	var n int
	s.View(func(tx ReadTx) { all, _ := tx.FindServices(All); n = len(all) })
	if n != 1 {
		t.Fatalf("%d services after Check, want 1", n)
	}
}

// TestResetLoadsObjectsAtTheirVersions: Reset swaps in a state made of
// objects, each at the version given, and ends open watchers as Restore
// does.
func TestResetLoadsObjectsAtTheirVersions(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(service("old", "old")) })
	w, err := s.Watch(context.Background(), s.Index())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Reset(42, []Versioned{
		{Action: &berthv1.StoreAction{Target: &berthv1.StoreAction_Service{Service: service("s1", "web")}}, Version: 40},
		{Action: &berthv1.StoreAction{Target: &berthv1.StoreAction_Service{Service: service("s2", "db")}}, Version: 42},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Index() != 42 {
		t.Fatalf("index %d, want 42", s.Index())
	}
	s.View(func(tx ReadTx) {
		if tx.GetService("old") != nil || tx.GetService("s1").GetMeta().GetVersion() != 40 || tx.GetService("s2").GetMeta().GetVersion() != 42 {
			t.Fatalf("after Reset: old %v, s1 %v, s2 %v", tx.GetService("old"), tx.GetService("s1").GetMeta(), tx.GetService("s2").GetMeta())
		}
	})
	if _, open := <-w.Events(); open || !errors.Is(w.Err(), ErrRestored) {
		t.Fatalf("watcher across a Reset: %v, want ErrRestored", w.Err())
	}
}
