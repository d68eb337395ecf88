package store

import "errors"

// Sentinel errors callers branch on with errors.Is; the manager maps them to
// gRPC codes (NotFound, AlreadyExists, Aborted, Unavailable).
var (
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExist means an object with that ID exists already.
	ErrExist = errors.New("object already exists")
	// ErrNameConflict means another object of the same kind has that name.
	ErrNameConflict = errors.New("name conflicts with an existing object")
	// ErrSequenceConflict means the object changed since it was read:
	// its meta.version is not the stored one. Read it again and retry.
	ErrSequenceConflict = errors.New("update out of sequence: object changed since it was read")
	// ErrNotLeader means this manager cannot commit writes: it is not the
	// Raft leader. Backends wrap it with the leader's address when known.
	ErrNotLeader = errors.New("not the leader")
	// ErrOutcomeUnknown means a write was handed to the cluster but its fate
	// is unknown (leadership lost or deadline hit after proposing): it may or
	// may not be applied. Read the state before retrying.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrNodeRemoved means a node with that ID was removed from the
	// cluster: its ID is never used again.
	ErrNodeRemoved = errors.New("node was removed from the cluster")
	// ErrInvalidObject means an object lacks what the store needs (an ID).
	ErrInvalidObject = errors.New("invalid object")
	// ErrInvalidFindBy means a selector does not apply to that table.
	ErrInvalidFindBy = errors.New("selector not supported for this table")
	// ErrCompacted means a watch asked for changes older than the store
	// keeps in its changelog. Take a new View and watch from its index.
	ErrCompacted = errors.New("changes are no longer kept; take a new snapshot and watch from its index")
	// ErrWatcherLagged means a watcher fell too far behind and was closed.
	// Take a new View and watch from its index.
	ErrWatcherLagged = errors.New("watcher fell behind and was closed; take a new snapshot and watch from its index")
	// ErrRestored means the whole state was replaced from a snapshot while
	// the watcher was open. Take a new View and watch from its index.
	ErrRestored = errors.New("state was restored from a snapshot; take a new snapshot and watch from its index")
)

// NeedsResync says whether a watch ended because the watcher must start
// over from a fresh view (it lagged, the state was restored from a
// snapshot, or its start index was compacted away), not because something
// failed: level-triggered loops take a new snapshot and go on.
func NeedsResync(err error) bool {
	return errors.Is(err, ErrWatcherLagged) || errors.Is(err, ErrRestored) || errors.Is(err, ErrCompacted)
}
