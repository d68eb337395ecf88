package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// Proposer replicates a batch of changes. The Raft backend implements it:
// Propose returns once the batch is committed and applied to this store
// (through Apply) and reports the log index and Apply's verdict. It returns
// an error wrapping ErrNotLeader when this member cannot commit, and one
// wrapping ErrOutcomeUnknown when the batch may or may not have applied.
//
// Unlike swarmkit's ProposeValue(ctx, storeAction, commitCb), there is no
// commit callback: every member, the leader included, applies the entry
// from the log, so the object versions are the log index on every replica.
type Proposer interface {
	Propose(ctx context.Context, batch *berthv1.StoreBatch) (index uint64, err error)
}

// Defaults for Options.
const (
	DefaultChangelogSize = 10000
	// DefaultMaxBatchBytes bounds one entry written by Batch. Entries are
	// sized by bytes, not by count: a few thousand task changes share one
	// fsync of the Raft log, and an entry stays a quarter of the 4 MiB a
	// gRPC message may carry when a follower forwards it to the leader.
	DefaultMaxBatchBytes    = 1 << 20
	defaultWatcherQueueSize = DefaultChangelogSize
)

// Option configures a MemoryStore.
type Option func(*MemoryStore)

// WithClock sets the clock that stamps created_at/updated_at.
func WithClock(now func() time.Time) Option { return func(s *MemoryStore) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *MemoryStore) { s.log = l } }

// WithChangelogSize sets how many recent change events the store keeps for
// Watch to replay (at least 1).
func WithChangelogSize(n int) Option {
	return func(s *MemoryStore) { s.changes.max = max(n, 1) }
}

// WithMaxBatchBytes bounds one entry written by Batch to about bytes
// encoded bytes (one Update larger than that is one entry still).
func WithMaxBatchBytes(bytes int) Option {
	return func(s *MemoryStore) { s.maxBytes = max(bytes, 1) }
}

// MemoryStore is the cluster state in memory. Safe for concurrent use.
type MemoryStore struct {
	db       atomic.Pointer[memdb.MemDB]
	proposer Proposer
	now      func() time.Time
	log      *slog.Logger

	applyMu sync.Mutex // orders Apply, Restore and their changelog publishing

	appliedMu sync.Mutex
	applied   chan struct{} // closed when the index moves; nil when nobody waits
	changes   changelog

	// intern shares equal parts of stored objects (see interner); every
	// path that stores objects (Apply, Restore, Reset) passes them to it.
	intern *interner

	maxBytes int
}

// New returns an empty store. With a nil proposer writes apply locally and
// the store index counts them; otherwise writes go through the proposer.
func New(p Proposer, opts ...Option) *MemoryStore {
	s := &MemoryStore{
		proposer: p,
		now:      time.Now,
		log:      slog.New(slog.DiscardHandler),
		changes:  changelog{max: DefaultChangelogSize, watchers: map[*Watcher]struct{}{}},
		maxBytes: DefaultMaxBatchBytes,
		intern:   newInterner(),
	}
	for _, o := range opts {
		o(s)
	}
	s.db.Store(newDB())
	return s
}

// newDB returns an empty database. It is a memdb snapshot of a new
// database rather than the database itself: memdb tracks the radix nodes
// a write changes, and closes their watch channels on commit, only for a
// primary database. The store has its own changelog and watches and never
// reads memdb's channels, so that bookkeeping (about a tenth of Apply's
// time for a large batch) buys nothing.
func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("store schema is invalid: %v", err)) // a programming error
	}
	return db.Snapshot()
}

// Index returns the store index: that of the last applied change.
func (s *MemoryStore) Index() uint64 { return readIndex(s.db.Load().Txn(false)) }

// View runs cb over a consistent read-only view of the store.
func (s *MemoryStore) View(cb func(ReadTx)) {
	cb(&readTx{r: memReader{s.db.Load().Txn(false)}})
}

// Update runs cb in a transaction and commits its writes as one atomic
// batch (one Raft entry). It returns once the batch is committed and
// applied here, or with cb's error (nothing is written), or with the
// proposer's or Apply's error. cb may run while other writers wait: keep it
// short and do not call Update from inside it.
func (s *MemoryStore) Update(ctx context.Context, cb func(Tx) error) error {
	tx := newWriteTx(memReader{s.db.Load().Txn(false)}, s.now)
	if err := cb(tx); err != nil {
		return err
	}
	if len(tx.ops) == 0 {
		return nil
	}
	_, err := s.commit(ctx, tx.batch())
	return err
}

// Commit proposes a batch as it is (for a leader applying a batch a
// follower forwarded). It returns the index the batch applied at.
func (s *MemoryStore) Commit(ctx context.Context, b *berthv1.StoreBatch) (uint64, error) {
	if s.proposer == nil {
		// Locally the store never keeps the caller's objects.
		b = proto.Clone(b).(*berthv1.StoreBatch)
	}
	return s.commit(ctx, b)
}

// commit proposes b, or applies it here without a proposer; b's objects
// are the store's to keep (a writeTx's clones).
func (s *MemoryStore) commit(ctx context.Context, b *berthv1.StoreBatch) (uint64, error) {
	if len(b.GetActions()) == 0 {
		return s.Index(), nil
	}
	if s.proposer != nil {
		return s.proposer.Propose(ctx, b)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	index := s.Index() + 1
	return index, s.applyLocked(index, b)
}
