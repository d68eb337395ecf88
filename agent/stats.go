package agent

import (
	"context"
	"fmt"
	"time"

	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// statsPeriod is how often a stats request samples its tasks, as
// `docker stats` refreshes; the CPU figure is the use over one period.
const statsPeriod = time.Second

// usageReader is a container whose usage can be read (runtime's are).
type usageReader interface {
	Stats() (runtime.Stats, error)
	NetIO() (rx, tx uint64, err error)
}

// usage is one raw reading of a task's container.
type usage struct {
	at    time.Time
	stats runtime.Stats
	rx    uint64
	tx    uint64
	err   error
}

// serveStats samples the requested tasks' containers every statsPeriod
// and sends each round on a PublishStats stream: once, or until the
// manager ends the request. A task with no running container here gets
// a sample with error set.
func (r *requests) serveStats(ctx context.Context, id string, req *pb.TaskStatsRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.client.PublishStats(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.PublishStatsRequest{SessionId: r.sid, RequestId: id}); err != nil {
		return err
	}
	prev := r.readAll(req.GetTaskIds())
	tick := time.NewTicker(statsPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur := r.readAll(req.GetTaskIds())
		msg := &pb.PublishStatsRequest{SessionId: r.sid}
		for _, task := range req.GetTaskIds() {
			msg.Stats = append(msg.Stats, sample(task, prev[task], cur[task]))
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
		if req.GetOnce() {
			_, err := stream.CloseAndRecv()
			return err
		}
		prev = cur
	}
}

// readAll reads the usage of each task's container.
func (r *requests) readAll(tasks []string) map[string]usage {
	out := make(map[string]usage, len(tasks))
	for _, t := range tasks {
		out[t] = r.read(t)
	}
	return out
}

func (r *requests) read(task string) usage {
	u := usage{at: time.Now()}
	c, ok := r.containers.Container(task)
	if !ok {
		u.err = fmt.Errorf("task %s has no container on this node", task)
		return u
	}
	ur, ok := c.(usageReader)
	if !ok {
		u.err = fmt.Errorf("task %s: this node's runtime reports no usage", task)
		return u
	}
	if u.stats, u.err = ur.Stats(); u.err != nil {
		return u
	}
	u.rx, u.tx, u.err = ur.NetIO()
	return u
}

// sample turns two readings of a task into what a user sees: CPU use
// over the time between them, memory without the reclaimable page cache.
func sample(task string, prev, cur usage) *pb.TaskStats {
	s := &pb.TaskStats{TaskId: task, TimestampUnixNano: cur.at.UnixNano()}
	if cur.err != nil {
		s.Error = cur.err.Error()
		return s
	}
	st := cur.stats
	s.CpuUsageNanos = uint64(st.CPUUsage)
	if dt := cur.at.Sub(prev.at); prev.err == nil && dt > 0 && st.CPUUsage >= prev.stats.CPUUsage {
		s.CpuPercent = float64(st.CPUUsage-prev.stats.CPUUsage) / float64(dt) * 100
	}
	s.MemoryBytes = st.MemoryBytes
	if st.MemoryInactiveFileBytes < st.MemoryBytes {
		s.MemoryBytes -= st.MemoryInactiveFileBytes
	}
	s.MemoryLimitBytes = st.MemoryLimitBytes
	s.NetRxBytes, s.NetTxBytes = cur.rx, cur.tx
	s.BlockReadBytes, s.BlockWriteBytes = st.BlockReadBytes, st.BlockWriteBytes
	s.Pids = st.Pids
	return s
}
