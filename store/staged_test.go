package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// TestStagedReadsMatchMemdb checks a writer's view against memdb itself:
// random creates, updates and deletes go through a Tx and, alike, into a
// memdb transaction; after each, every selector returns the same objects
// in the same order from both.
func TestStagedReadsMatchMemdb(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error {
		for i := range 40 {
			if err := tx.CreateTask(task(fmt.Sprintf("t%02d", i), fmt.Sprintf("s%d", i%3), uint64(i%5), fmt.Sprintf("n%d", i%4), 0)); err != nil {
				return err
			}
		}
		for i := range 4 {
			if err := tx.CreateService(service(fmt.Sprintf("s%d", i), fmt.Sprintf("web-%d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	rng := rand.New(rand.NewPCG(1, 2))
	errDone := errors.New("done")
	err := s.Update(t.Context(), func(tx Tx) error {
		mirror := s.db.Load().Txn(true)
		defer mirror.Abort()
		for step := range 300 {
			if err := stagedStep(tx, mirror, rng); err != nil {
				return fmt.Errorf("step %d: %w", step, err)
			}
			want := &readTx{r: memReader{mirror}}
			if err := sameReads(tx, want); err != nil {
				return fmt.Errorf("step %d: %w", step, err)
			}
		}
		return errDone
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
}

// stagedStep makes one random change through tx and the same in mirror.
func stagedStep(tx Tx, mirror interface {
	Insert(string, any) error
	Delete(string, any) error
}, rng *rand.Rand) error {
	id := fmt.Sprintf("t%02d", rng.IntN(60))
	cur := tx.GetTask(id)
	switch {
	case cur == nil:
		n := task(id, fmt.Sprintf("s%d", rng.IntN(3)), uint64(rng.IntN(5)), fmt.Sprintf("n%d", rng.IntN(5)), berthv1.TaskState(rng.IntN(3)))
		if err := tx.CreateTask(n); err != nil {
			return err
		}
		return mirror.Insert(tableTask, tx.GetTask(id))
	case rng.IntN(4) == 0:
		if err := tx.DeleteTask(id); err != nil {
			return err
		}
		return mirror.Delete(tableTask, cur)
	default:
		u := proto.Clone(cur).(*berthv1.Task)
		u.NodeId = fmt.Sprintf("n%d", rng.IntN(5))
		u.Slot = uint64(rng.IntN(5))
		if err := tx.UpdateTask(u); err != nil {
			return err
		}
		return mirror.Insert(tableTask, tx.GetTask(id))
	}
}

func sameReads(got Tx, want ReadTx) error {
	sels := []By{All, ByIDPrefix("t1"), ByServiceID("s1"), BySlot("s2", 3), ByServiceNode("s0", "n1"), ByDesiredState(1)}
	for i := range 5 {
		sels = append(sels, ByNodeID(fmt.Sprintf("n%d", i)))
	}
	for _, by := range sels {
		g, err := got.FindTasks(by)
		if err != nil {
			return err
		}
		w, err := want.FindTasks(by)
		if err != nil {
			return err
		}
		if !slices.Equal(ids(g), ids(w)) {
			return fmt.Errorf("find tasks by %v: staged %v, memdb %v", by, ids(g), ids(w))
		}
	}
	return nil
}

// TestStagedNames checks name conflicts against the writer's own renames
// and deletes.
func TestStagedNames(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(service("a", "web")) })
	mustUpdate(t, s, func(tx Tx) error {
		if err := tx.CreateService(service("b", "WEB")); !errors.Is(err, ErrNameConflict) {
			return fmt.Errorf("create b named WEB while a is web: %v, want ErrNameConflict", err)
		}
		a := proto.Clone(tx.GetService("a")).(*berthv1.Service)
		a.Spec.Annotations.Name = "api"
		if err := tx.UpdateService(a); err != nil {
			return err
		}
		if err := tx.CreateService(service("b", "web")); err != nil {
			return fmt.Errorf("create b named web after a was renamed: %w", err)
		}
		if err := tx.CreateService(service("c", "api")); !errors.Is(err, ErrNameConflict) {
			return fmt.Errorf("create c named api, a's new name: %v, want ErrNameConflict", err)
		}
		if err := tx.DeleteService("b"); err != nil {
			return err
		}
		if err := tx.CreateService(service("c", "web")); err != nil {
			return fmt.Errorf("create c named web after b was deleted: %w", err)
		}
		if got, _ := tx.FindServices(ByName("web")); len(got) != 1 || got[0].GetId() != "c" {
			return fmt.Errorf("find by name web: %v, want [c]", ids(got))
		}
		return nil
	})
	s.View(func(tx ReadTx) {
		all, _ := tx.FindServices(All)
		if !slices.Equal(ids(all), []string{"a", "c"}) {
			t.Fatalf("services %v, want [a c]", ids(all))
		}
	})
}
