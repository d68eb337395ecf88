package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/ca"
	pb "berth/proto/berth/v1"
)

// attachRecord is one standalone container on attachable networks, as
// kept in DATA/attachments/<container>.json: what a restarted daemon
// needs to adopt it (pid and start time, against a recycled pid) or,
// once it has ended, to take its attachment back (the task).
type attachRecord struct {
	ContainerID string          `json:"container_id"`
	Pid         int             `json:"pid"`
	Start       uint64          `json:"start"`
	TaskID      string          `json:"task_id"`
	Task        json.RawMessage `json:"task,omitempty"` // protojson
	// Ended: the container is off its networks here; the managers may not
	// have been told yet (DetachNetwork is retried by the next daemon).
	Ended bool `json:"ended,omitempty"`

	// in memory only, under attachments.mu
	task       *pb.Task      // the attachment task as last seen
	seen       bool          // it reached the node in the assignment stream
	adopted    bool          // an earlier daemon attached it
	registered bool          // the overlay knows it (its VIP table is kept)
	lost       bool          // the managers dropped its task
	watched    bool          // its watch runs
	stopped    chan struct{} // closed by stop: detach now
	stopOnce   sync.Once
	done       chan struct{} // closed once it is detached and forgotten
}

// stop asks r's watch to detach it now.
func (r *attachRecord) stop() { r.stopOnce.Do(func() { close(r.stopped) }) }

func newRecord(containerID string, pid int, start uint64, t *pb.Task) *attachRecord {
	return &attachRecord{ContainerID: containerID, Pid: pid, Start: start, TaskID: t.GetId(), task: t,
		stopped: make(chan struct{}), done: make(chan struct{})}
}

// recordFile is where a container's record is kept.
func recordFile(dir, containerID string) string { return filepath.Join(dir, containerID+".json") }

// save writes the record, atomically (a crash leaves the old one or the new).
func (r *attachRecord) save(dir string) error {
	if r.task != nil {
		b, err := protojson.Marshal(r.task)
		if err != nil {
			return fmt.Errorf("record attachment of %s: %w", r.ContainerID, err)
		}
		r.Task = b
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record attachment of %s: %w", r.ContainerID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record attachment of %s: %w", r.ContainerID, err)
	}
	if err := ca.WriteFileAtomic(recordFile(dir, r.ContainerID), data, 0o600); err != nil {
		return fmt.Errorf("record attachment of %s: %w", r.ContainerID, err)
	}
	return nil
}

// removeRecord deletes a container's record; one not there is no error.
func removeRecord(dir, containerID string) error {
	if err := os.Remove(recordFile(dir, containerID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the attachment record of %s: %w", containerID, err)
	}
	return nil
}

// loadRecords reads every record in dir; unreadable ones are returned as
// errors and left in place for an operator.
func loadRecords(dir string) ([]*attachRecord, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attachment records: %w", err)
	}
	var recs []*attachRecord
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, r)
	}
	return recs, errors.Join(errs...)
}

func readRecord(path string) (*attachRecord, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &attachRecord{stopped: make(chan struct{}), done: make(chan struct{})}
	if err := json.Unmarshal(data, r); err != nil || r.ContainerID == "" || r.TaskID == "" {
		return nil, fmt.Errorf("attachment record %s does not parse (%v); remove it", path, err)
	}
	if len(r.Task) > 0 {
		t := &pb.Task{}
		if err := protojson.Unmarshal(r.Task, t); err == nil {
			r.task = t
		}
	}
	if r.task == nil {
		r.task = &pb.Task{Id: r.TaskID}
	}
	return r, nil
}
