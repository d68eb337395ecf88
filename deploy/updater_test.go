package deploy

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// runUpdater runs an Updater over e's store and clock; stop ends it, as a
// lost leadership does.
func (e *env) runUpdater() (stop func()) {
	e.t.Helper()
	u, err := NewUpdater(Config{Store: e.st, Now: e.clock.Now, After: e.clock.After})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("updater: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// liveImages maps each slot to the image of its live tasks.
func (e *env) liveImages(service string) map[uint64][]string {
	out := map[uint64][]string{}
	for _, t := range e.live(service) {
		out[t.GetSlot()] = append(out[t.GetSlot()], t.GetSpec().GetContainer().GetImage())
	}
	return out
}

// startUpdate changes the service's image as the Control API does.
func (e *env) startUpdate(id, image string) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		s := proto.Clone(tx.GetService(id)).(*pb.Service)
		s.PreviousSpec = proto.Clone(s.Spec).(*pb.ServiceSpec)
		s.Spec.Task.Container.Image = image
		s.SpecVersion++
		s.UpdateStatus = &pb.UpdateStatus{State: stUpdating, StartedAt: timestamppb.New(e.clock.Now())}
		return tx.UpdateService(s)
	})
}

// TestUpdaterResumesAfterLeaderChange runs the real loops on a fake clock:
// the orchestrator, and an updater that loses leadership after the first
// slot is updated. The next updater does not touch that slot again and
// waits the delay out before the next one.
func TestUpdaterResumesAfterLeaderChange(t *testing.T) {
	e := newEnv(t, 5)
	e.addNode("n1", nil)
	spec := replicated("web", 3)
	spec.Update = &pb.UpdateConfig{Parallelism: 1, Delay: durationpb.New(10 * time.Second), Monitor: durationpb.New(0)}
	id := e.createService(spec)
	for _, task := range e.awaitSlots(id, "1", "2", "3") {
		e.runOn(task.GetId(), "n1")
	}
	stop := e.runUpdater()
	e.startUpdate(id, "busybox:v2")
	var first *pb.Task
	await.True(t, wait, func() bool {
		for _, task := range e.live(id) {
			if task.GetSpec().GetContainer().GetImage() == "busybox:v2" {
				first = task
			}
		}
		return first != nil
	}, "a first slot on v2")
	e.runOn(first.GetId(), "n1")
	e.barrier()
	stop() // leadership lost

	stop = e.runUpdater()
	e.barrier()
	count := func() int {
		n := 0
		for _, task := range e.tasks(id) {
			if task.GetSpec().GetContainer().GetImage() == "busybox:v2" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("the new updater made %d v2 tasks before the delay ended, want the first one only (%v)", n, e.liveImages(id))
	}
	// The new leader waits a whole delay from when it first saw the slot up.
	e.advanceWhenWaited(10 * time.Second)
	await.True(t, wait, func() bool { return count() == 2 }, "second slot on v2 after the delay")
	e.runPending(id)
	e.advanceWhenWaited(10 * time.Second)
	await.True(t, wait, func() bool { return count() == 3 }, "third slot on v2")
	e.runPending(id)
	e.advanceWhenWaited(10 * time.Second)
	await.True(t, wait, func() bool {
		var st *pb.UpdateStatus
		e.st.View(func(tx store.ReadTx) { st = tx.GetService(id).GetUpdateStatus() })
		return st.GetState() == stCompleted
	}, "update completed")
	for slot, imgs := range e.liveImages(id) {
		if len(imgs) != 1 || imgs[0] != "busybox:v2" {
			t.Errorf("slot %d runs %v, want one busybox:v2 task", slot, imgs)
		}
	}
	if n := count(); n != 3 {
		t.Errorf("%d v2 tasks for 3 slots: a slot was updated twice", n)
	}
	stop()
}

// runPending starts the service's live tasks that do not run yet.
func (e *env) runPending(id string) {
	e.t.Helper()
	for _, task := range e.live(id) {
		if task.GetStatus().GetState() != running {
			e.runOn(task.GetId(), "n1")
		}
	}
}

// advanceWhenWaited moves the clock by d once someone waits for exactly
// that long from now (the updater's delay or monitor timer).
func (e *env) advanceWhenWaited(d time.Duration) {
	e.t.Helper()
	at := e.clock.Now().Add(d)
	await.True(e.t, wait, func() bool { return e.clock.waitingFor(at) }, "a timer for %v", at)
	e.clock.Advance(d)
}
