package manager

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/manager/dispatcher"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// DefaultGossipKeyRotation is how often the gossip key rotates when no
// node removal calls for it sooner, as Swarm rotates its keys.
const DefaultGossipKeyRotation = 12 * time.Hour

// gossipKeys returns the key nodes encrypt gossip with and the others
// they accept meanwhile: what sessions hand agents and what managers'
// own members use.
func gossipKeys(c *pb.Cluster) (primary []byte, accept [][]byte) {
	r := c.GetGossipRotation()
	for _, k := range [][]byte{r.GetNext(), r.GetPrevious()} {
		if len(k) > 0 {
			accept = append(accept, k)
		}
	}
	return c.GetGossipKey(), accept
}

// keyStep is one write of a gossip key rotation.
type keyStep int

const (
	keyWait    keyStep = iota // nothing is due yet
	keyInstall                // make a new key that every node accepts
	keyPromote                // encrypt with the new key, still accept the old
	keyDrop                   // stop accepting the old key
)

func (s keyStep) String() string {
	return [...]string{"wait", "install", "promote", "drop"}[s]
}

// nextKeyStep decides a rotation's next step, and for keyWait when one
// falls due, from the cluster, the store index of the latest node
// removal, the time and the rotation period:
//   - an installed key (next) is made primary; then the key it replaced
//     (previous) is dropped. The caller spaces these steps so that each
//     reaches every node before the next;
//   - otherwise a new key is installed when a node was removed after the
//     newest key was made (that node may know it), or when the newest key
//     is a period old;
//   - otherwise nothing is due until the newest key is a period old.
func nextKeyStep(c *pb.Cluster, lastRemoval uint64, now time.Time, every time.Duration) (step keyStep, due time.Time, why string) {
	r := c.GetGossipRotation()
	switch {
	case len(r.GetNext()) > 0:
		return keyPromote, now, "the new key reached every node"
	case len(r.GetPrevious()) > 0:
		return keyDrop, now, "every node encrypts with the new key"
	case lastRemoval > r.GetRemovedIndex():
		return keyInstall, now, "a node was removed"
	}
	made := r.GetCreatedAt()
	if made == nil {
		made = c.GetMeta().GetCreatedAt()
	}
	due = made.AsTime().Add(every)
	if !now.Before(due) {
		return keyInstall, now, "the key is " + every.String() + " old"
	}
	return keyWait, due, ""
}

// lastRemoval is the store index of the latest node removal.
func lastRemoval(tx store.ReadTx) uint64 {
	removed, _ := tx.FindRemovedNodes(store.All)
	var last uint64
	for _, r := range removed {
		last = max(last, r.GetMeta().GetVersion())
	}
	return last
}

// keyRotator rotates the cluster's gossip key while this manager leads:
// every period, and after each node removal, so that a removed node's key
// stops working. Each step waits settle after the step before was first
// seen, long enough for sessions to carry it to every live node (and for
// a node whose session broke to come back or be marked down).
type keyRotator struct {
	st        *store.MemoryStore
	clusterID string
	every     time.Duration
	now       func() time.Time
	log       *slog.Logger
}

// keySettle spaces rotation steps by twice the time a session may go silent
// before its node is put down, at the cluster's heartbeat period now: by
// then each step reached every live node.
func keySettle(c *pb.Cluster) time.Duration {
	return 2 * time.Duration(dispatcher.DefaultHeartbeatGrace) * heartbeatPeriod(c)
}

// errStaleView says the cluster changed since a step was decided.
var errStaleView = errors.New("the cluster changed since the step was decided")

// run rotates until ctx ends.
func (r *keyRotator) run(ctx context.Context) error {
	return store.Follow(ctx, r.log, r.follow)
}

// follow decides on a view, and looks again when the cluster or the
// removed nodes change, when a step falls due, or after a write.
func (r *keyRotator) follow(ctx context.Context) error {
	var p pacer
	for ctx.Err() == nil {
		var c *pb.Cluster
		var removal uint64
		w, err := r.st.ViewAndWatch(ctx, func(tx store.ReadTx) {
			c, removal = tx.GetCluster(r.clusterID), lastRemoval(tx)
		}, store.Only[*pb.Cluster](), store.Only[*pb.RemovedNode]())
		if err != nil {
			return err
		}
		now := r.now()
		step, due, why := keyWait, now.Add(r.every), ""
		if len(c.GetGossipKey()) > 0 { // none before the cluster object is written
			step, due, why = p.pace(c, removal, now, r.every, keySettle(c))
		}
		if step == keyWait {
			err = r.wait(ctx, w, due.Sub(now))
			w.Close()
			if err != nil {
				return err
			}
			continue
		}
		w.Close()
		r.take(ctx, c, step, why)
	}
	return nil
}

// take writes a step decided on c; a failed write is tried again after a
// pause (by then the next view may decide otherwise).
func (r *keyRotator) take(ctx context.Context, c *pb.Cluster, step keyStep, why string) {
	err := r.write(ctx, c, step)
	switch {
	case err == nil:
		r.log.Info("gossip key rotation", "step", step.String(), "why", why)
	case !errors.Is(err, errStaleView) && ctx.Err() == nil:
		r.log.Warn("gossip key rotation step failed; will retry", "step", step.String(), "err", err)
		_ = r.wait(ctx, nil, time.Second)
	}
}

// pacer holds a rotation's later steps back until the step before had
// settle to reach every node, counted from when this manager first saw it
// (a new leader waits a full settle).
type pacer struct {
	stage []byte // the rotation in progress when last seen
	since time.Time
}

func (p *pacer) pace(c *pb.Cluster, removal uint64, now time.Time, every, settle time.Duration) (keyStep, time.Time, string) {
	if cur := inProgress(c); string(cur) != string(p.stage) {
		p.stage, p.since = cur, now
	}
	step, due, why := nextKeyStep(c, removal, now, every)
	if (step == keyPromote || step == keyDrop) && now.Before(p.since.Add(settle)) {
		return keyWait, p.since.Add(settle), ""
	}
	return step, due, why
}

// inProgress names the rotation in progress (its new key, its step).
func inProgress(c *pb.Cluster) []byte {
	r := c.GetGossipRotation()
	if len(r.GetNext()) > 0 {
		return append([]byte("next:"), r.GetNext()...)
	}
	if len(r.GetPrevious()) > 0 {
		return append([]byte("previous:"), r.GetPrevious()...)
	}
	return nil
}

// wait returns after d, or at w's next event (nil w: none), or with the
// watch's error; nil when ctx ended.
func (r *keyRotator) wait(ctx context.Context, w *store.Watcher, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	var events <-chan store.Event
	if w != nil {
		events = w.Events()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-t.C:
		return nil
	case _, ok := <-events:
		if !ok && ctx.Err() == nil {
			return w.Err()
		}
		return nil
	}
}

// write makes one step, unless the cluster changed since it was decided.
func (r *keyRotator) write(ctx context.Context, seen *pb.Cluster, step keyStep) error {
	var key []byte
	if step == keyInstall {
		var err error
		if key, err = ca.NewClusterKey(); err != nil {
			return err
		}
	}
	return r.st.Update(ctx, func(tx store.Tx) error {
		cur := tx.GetCluster(r.clusterID)
		if cur.GetMeta().GetVersion() != seen.GetMeta().GetVersion() {
			return errStaleView
		}
		c := proto.Clone(cur).(*pb.Cluster)
		rot := c.GetGossipRotation()
		if rot == nil {
			rot = &pb.GossipKeyRotation{}
		}
		switch step {
		case keyInstall:
			rot.Next, rot.CreatedAt, rot.RemovedIndex = key, timestamppb.New(r.now()), lastRemoval(tx)
		case keyPromote:
			c.GossipKey, rot.Previous, rot.Next = rot.Next, c.GossipKey, nil
		case keyDrop:
			rot.Previous = nil
		}
		c.GossipRotation = rot
		return tx.UpdateCluster(c)
	})
}
