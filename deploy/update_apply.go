package deploy

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// apply writes rollout plans in one batch, each service atomically. A plan
// made against a spec that changed since is dropped: the change's own
// event plans the service again.
func (u *Updater) apply(ctx context.Context, plans []rolloutPlan) error {
	return u.st.Batch(ctx, func(b *store.Batch) error {
		for _, p := range plans {
			var n int
			err := b.Update(func(tx store.Tx) error {
				var err error
				n, err = writeRollout(tx, p)
				return err
			})
			if err != nil {
				return err
			}
			if p.status != nil {
				u.log.Info("update status", "service", p.service, "state", p.status.GetState(), "message", p.status.GetMessage())
			}
			u.log.Debug("rollout written", "service", p.service, "replaced", n, "retired", len(p.retire))
		}
		return nil
	})
}

// writeRollout writes one service's plan; it returns how many units it
// replaced.
func writeRollout(tx store.Tx, p rolloutPlan) (int, error) {
	svc := tx.GetService(p.service)
	if svc == nil || svc.GetSpecVersion() != p.version {
		return 0, nil
	}
	if p.status != nil || p.rollback {
		next := proto.Clone(svc).(*pb.Service)
		if p.status != nil {
			next.UpdateStatus = p.status
		}
		if p.rollback {
			// Swarm's automatic rollback: back to the previous spec, which
			// is then forgotten (a rollback is not rolled back).
			next.Spec, next.SpecVersion = next.GetPreviousSpec(), svc.GetSpecVersion()+1
			next.PreviousSpec, next.PreviousSpecVersion = nil, 0
		}
		if err := tx.UpdateService(next); err != nil {
			return 0, fmt.Errorf("update service %s: %w", p.service, err)
		}
	}
	for _, t := range p.retire {
		if _, err := stopTask(tx, t.GetId()); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, r := range p.replace {
		ok, err := replaceIn(tx, r)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// replaceIn writes one unit's replacement if the unit's live tasks are
// still those planned; otherwise it leaves the unit to the next round.
func replaceIn(tx store.Tx, r replacement) (bool, error) {
	by := store.BySlot(r.u.service, r.u.slot)
	if r.u.slot == 0 {
		by = store.ByServiceNode(r.u.service, r.u.node)
	}
	tasks, err := tx.FindTasks(by)
	if err != nil {
		return false, err
	}
	var live []string
	for _, t := range tasks {
		if t.GetDesiredState() <= running {
			live = append(live, t.GetId())
		}
	}
	slices.Sort(live)
	planned := slices.Sorted(slices.Values(r.live))
	if !slices.Equal(live, planned) {
		return false, nil
	}
	for _, t := range r.stop {
		if _, err := stopTask(tx, t.GetId()); err != nil {
			return false, err
		}
	}
	if err := tx.CreateTask(r.create); err != nil {
		return false, fmt.Errorf("create task %s: %w", r.create.GetId(), err)
	}
	return true, nil
}
