package faults

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// scenarios are every fault pattern of the suite; short ones also run in
// the short form.
func scenarios() []scenario {
	return []scenario{
		{name: "leader-kill", short: true, inject: leaderKill},
		{name: "minority-partition", short: true, inject: minorityPartition},
		{name: "majority-partition", inject: majorityPartition},
		{name: "agent-from-managers", short: true, inject: agentFromManagers},
		{name: "agent-from-peers", agents: 3, inject: agentFromPeers},
		{name: "flapping-links", inject: flappingLinks},
		{name: "disk-full", before: diskOnTmpfs, inject: diskFull},
		{name: "sigstop", inject: sigstop},
		{name: "restart-all", inject: restartAll},
	}
}

// jitter is a duration in [lo, hi) from the run's schedule.
func (r *run) jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// leaderKill kills the leader with SIGKILL, restarts it after a moment,
// and again, until d has passed.
func leaderKill(ctx context.Context, r *run, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; {
		m, err := r.leader(ctx)
		if err != nil {
			return err
		}
		if err := r.c.Kill9(m); err != nil {
			return err
		}
		r.fault("kill -9 leader")
		r.newLeader(ctx, m)
		pause(ctx, r.jitter(0, time.Second))
		if err := r.c.Restart(ctx, m); err != nil {
			return err
		}
		pause(ctx, r.jitter(2*time.Second, 4*time.Second))
	}
	return nil
}

// minorityPartition cuts the leader off from every other node, both ways,
// then only its outgoing traffic (it hears the others, they do not hear
// it), healing in between.
func minorityPartition(ctx context.Context, r *run, d time.Duration) error {
	all := append(append([]*e2ecluster.Node{}, r.c.Managers...), r.c.Agents...)
	for i, end := 0, time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; i++ {
		m, err := r.leader(ctx)
		if err != nil {
			return err
		}
		rest := others(all, m)
		if i%2 == 0 {
			err = r.net.partition(ctx, []*e2ecluster.Node{m}, rest)
			r.fault("leader cut off, two-way")
		} else {
			err = r.net.dropFrom(ctx, []*e2ecluster.Node{m}, rest)
			r.fault("leader's outgoing traffic dropped")
		}
		if err != nil {
			return err
		}
		if r.backend == "raft" {
			// On etcd the cut-off manager still reaches etcd and keeps
			// its lease: it leads on, without its agents.
			r.newLeader(ctx, m)
		}
		pause(ctx, r.jitter(d/8, d/4))
		if err := r.net.heal(ctx); err != nil {
			return err
		}
		pause(ctx, r.jitter(2*time.Second, 3*time.Second))
	}
	return nil
}

// majorityPartition leaves no majority: every manager is cut off from the
// others (two-way), then each hears only one other, one way round a ring.
func majorityPartition(ctx context.Context, r *run, d time.Duration) error {
	ms := r.c.Managers
	for i, end := 0, time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; i++ {
		var err error
		if i%2 == 0 {
			for j := range ms {
				if err = r.net.partition(ctx, ms[j:j+1], ms[j+1:]); err != nil {
					return err
				}
			}
			r.fault("managers split three ways, two-way")
		} else {
			for j := range ms {
				next := ms[(j+1)%len(ms)]
				if err = r.net.dropFrom(ctx, ms[j:j+1], []*e2ecluster.Node{next}); err != nil {
					return err
				}
			}
			r.fault("managers in a one-way ring")
		}
		pause(ctx, r.jitter(d/4, d/3))
		if err := r.net.heal(ctx); err != nil {
			return err
		}
		pause(ctx, r.jitter(2*time.Second, 3*time.Second))
	}
	return nil
}

// agentFromManagers cuts the first agent off from every manager (its
// peers still reach it) for most of d: its node goes down and its tasks
// move; when it comes back it must stop the containers it kept.
func agentFromManagers(ctx context.Context, r *run, d time.Duration) error {
	a := r.c.Agents[0]
	if err := r.net.partition(ctx, []*e2ecluster.Node{a}, r.c.Managers); err != nil {
		return err
	}
	r.fault("%s cut off from the managers", a.Name)
	r.nodeIs(ctx, a.Name, pb.NodeStatus_STATE_DOWN)
	pause(ctx, d/2)
	return nil
}

// agentFromPeers cuts the first agent off from the other agents only: its
// sessions with the managers stay up.
func agentFromPeers(ctx context.Context, r *run, d time.Duration) error {
	a := r.c.Agents[0]
	if err := r.net.partition(ctx, []*e2ecluster.Node{a}, r.c.Agents[1:]); err != nil {
		return err
	}
	r.fault("%s cut off from its peers", a.Name)
	pause(ctx, d)
	return nil
}

// flappingLinks has every link between any two nodes drop
// testhost.LossPercent of its packets.
func flappingLinks(ctx context.Context, r *run, d time.Duration) error {
	all := append(append([]*e2ecluster.Node{}, r.c.Managers...), r.c.Agents...)
	if err := r.net.flap(ctx, all); err != nil {
		return err
	}
	r.fault("every link drops 20 %% of packets")
	pause(ctx, d)
	return nil
}

// diskSize is the size of the tmpfs a manager keeps its data on in the
// disk-full scenario: room for its Raft log and snapshots in a short run.
const diskSize = 96 << 20

// diskOnTmpfs puts the first manager's data directory on a small tmpfs.
func diskOnTmpfs(r *run) error {
	dir := r.dir + "/m1"
	if err := mountTmpfs(dir, diskSize); err != nil {
		return err
	}
	r.t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			r.t.Errorf("unmount the data disk: %v", err)
		}
	})
	return nil
}

// diskFull fills the first manager's data disk for half of d, then frees
// it. A manager that exits on a full disk is restarted, as its supervisor
// would.
func diskFull(ctx context.Context, r *run, d time.Duration) error {
	m := r.c.Managers[0]
	led, err := r.leader(ctx)
	if err != nil {
		return err
	}
	n, err := fillDisk(m.DataDir)
	if err != nil {
		return err
	}
	r.fault("%s's data disk full (%d MiB written)", m.Name, n>>20)
	if led == m && r.backend == "raft" {
		// A Raft leader that cannot append to its log steps down.
		r.newLeader(ctx, m)
	}
	pause(ctx, d/2)
	if err := freeDisk(m.DataDir); err != nil {
		return err
	}
	if r.c.Exited(m) {
		r.fault("%s exited on the full disk; restarted", m.Name)
		if err := r.c.Restart(ctx, m); err != nil {
			return err
		}
	}
	pause(ctx, d/2)
	return nil
}

// sigstop pauses the leader past its heartbeats and election timeout,
// then an agent past its node's heartbeat grace, each then resumed.
func sigstop(ctx context.Context, r *run, d time.Duration) error {
	m, err := r.leader(ctx)
	if err != nil {
		return err
	}
	for _, n := range []*e2ecluster.Node{m, r.c.Agents[0]} {
		// The pause of the leader may have cost the agents their
		// sessions: start from a node that is ready again.
		if !until(ctx, r.nodeState(r.c.Agents[0].Name, pb.NodeStatus_STATE_READY)) {
			return fmt.Errorf("%s not ready before its pause", r.c.Agents[0].Name)
		}
		if err := r.c.Signal(n, syscall.SIGSTOP); err != nil {
			return err
		}
		r.fault("SIGSTOP %s", role(r, n))
		if n == m {
			r.newLeader(ctx, m)
		} else {
			r.nodeIs(ctx, n.Name, pb.NodeStatus_STATE_DOWN)
		}
		pause(ctx, d/5)
		if err := r.c.Signal(n, syscall.SIGCONT); err != nil {
			return err
		}
		pause(ctx, d/10)
	}
	return nil
}

// restartAll kills every manager and agent at once and starts them all
// again, twice.
func restartAll(ctx context.Context, r *run, d time.Duration) error {
	all := append(append([]*e2ecluster.Node{}, r.c.Managers...), r.c.Agents...)
	for range 2 {
		for _, n := range all {
			if err := r.c.Kill9(n); err != nil {
				return err
			}
		}
		r.fault("kill -9 every process, restart all")
		for _, n := range all {
			if err := r.c.Restart(ctx, n); err != nil {
				return err
			}
		}
		pause(ctx, d/2)
	}
	return nil
}

// role names a node for the report.
func role(r *run, n *e2ecluster.Node) string {
	for _, a := range r.c.Agents {
		if a == n {
			return "agent " + n.Name
		}
	}
	return fmt.Sprintf("leader %s", n.Name)
}
