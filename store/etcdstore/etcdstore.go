package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// format marks a prefix as holding berth's state in this layout.
const format = "berth-store-v1"

// Defaults for Config.
const (
	DefaultPrefix = "/berth"
	// DefaultRequestTimeout bounds one request, so that an unreachable
	// etcd is reported rather than waited for.
	DefaultRequestTimeout = 5 * time.Second
)

// Config assembles a Backend.
type Config struct {
	// Client talks to etcd (see Dial).
	Client *clientv3.Client
	// Prefix is where the state lives; DefaultPrefix when empty.
	Prefix string
	// RequestTimeout bounds each request; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	// LeaseTTL is the leader's lease (whole seconds, at least 2);
	// DefaultLeaseTTL when zero.
	LeaseTTL time.Duration
	// StoreOptions are passed to store.New.
	StoreOptions []store.Option
	// Forward, if set, passes a write to the leading manager, so that one
	// manager writes to etcd and writers do not race each other for the
	// guard across managers. It returns forwarded false to have the write
	// made here (this manager leads, or none is known); a write the
	// leader refused as ErrNotLeader (and surely did not apply) is made
	// here too. Writes made anywhere are safe: each is guarded.
	Forward func(ctx context.Context, batch *berthv1.StoreBatch) (index uint64, forwarded bool, err error)
	// OnCommit, if set, receives how long each etcd transaction this
	// manager committed took (metrics).
	OnCommit func(time.Duration)
	Logger   *slog.Logger
}

// Backend is the etcd backend of one manager's store.
type Backend struct {
	cfg       Config
	log       *slog.Logger
	store     *store.MemoryStore
	endpoints string
	keys      keys
	// from is the revision the watch starts at after Open's snapshot.
	from      int64
	reachable atomic.Bool
	// renewed is when the leader lease was last renewed (UnixNano).
	renewed atomic.Int64
	// writing holds the one write of this manager under way.
	writing chan struct{}
	// lost counts commits another write beat to etcd (each is checked
	// again), for tests to wait on.
	lost atomic.Int64
}

// keys are the backend's keys under its prefix.
type keys struct {
	prefix, format, batch, objects string
}

func newKeys(prefix string) keys {
	return keys{prefix: prefix, format: prefix + "/format", batch: prefix + "/batch", objects: prefix + "/objects/"}
}

func (k keys) object(table, id string) string { return k.objects + table + "/" + id }

// checkPrefix refuses a prefix that does not name a key path.
func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("--etcd-prefix %q: want a key path such as %s (starting with /, no trailing /)", p, DefaultPrefix)
	}
	return nil
}

// Open checks that the prefix holds berth's state (or nothing, and marks
// it), and loads the state: the store is ready when Open returns. Run
// follows the changes.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Client == nil {
		return nil, errors.New("etcdstore: Config.Client is nil")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < 2*time.Second || cfg.LeaseTTL%time.Second != 0 {
		return nil, fmt.Errorf("etcdstore: LeaseTTL %s: want whole seconds, at least 2s", cfg.LeaseTTL)
	}
	b := &Backend{
		cfg: cfg, log: cfg.Logger, keys: newKeys(cfg.Prefix),
		endpoints: strings.Join(cfg.Client.Endpoints(), ","),
		writing:   make(chan struct{}, 1),
	}
	b.reachable.Store(true)
	b.store = store.New(b, cfg.StoreOptions...)
	if err := b.claimPrefix(ctx); err != nil {
		return nil, err
	}
	from, err := b.load(ctx)
	if err != nil {
		return nil, err
	}
	b.from = from
	return b, nil
}

// Store is the manager's view of the state.
func (b *Backend) Store() *store.MemoryStore { return b.store }

// Reachable says whether etcd answered the last request or probe.
func (b *Backend) Reachable() bool { return b.reachable.Load() }

// claimPrefix checks the format key, or writes it into an empty prefix.
func (b *Backend) claimPrefix(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	resp, err := b.cfg.Client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(b.keys.format), "=", 0)).
		Then(clientv3.OpGet(b.keys.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())).
		Else(clientv3.OpGet(b.keys.format)).Commit()
	if err != nil {
		return b.unreachable(err)
	}
	if !resp.Succeeded {
		got := string(resp.Responses[0].GetResponseRange().GetKvs()[0].GetValue())
		if got != format {
			return fmt.Errorf("etcd prefix %s holds berth state of format %q; this manager reads %q: upgrade it", b.keys.prefix, got, format)
		}
		return nil
	}
	if n := resp.Responses[0].GetResponseRange().GetCount(); n > 0 {
		return fmt.Errorf("etcd prefix %s holds %d keys that are not berth's (no %s): give --etcd-prefix a prefix of berth's own", b.keys.prefix, n, b.keys.format)
	}
	_, err = b.cfg.Client.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(b.keys.format), "=", 0)).
		Then(clientv3.OpPut(b.keys.format, format)).Commit()
	if err != nil {
		return b.unreachable(err)
	}
	b.log.Info("etcd prefix claimed for berth", "prefix", b.keys.prefix, "etcd", b.endpoints)
	return nil
}

// unreachable turns a failed request into the error operators see, and
// notes that etcd did not answer.
func (b *Backend) unreachable(err error) error {
	if b.reachable.Swap(false) {
		b.log.Warn("etcd unreachable", "etcd", b.endpoints, "err", err)
	}
	return fmt.Errorf("etcd unreachable at %s: %w", b.endpoints, err)
}

// answered notes that etcd answered.
func (b *Backend) answered() {
	if !b.reachable.Swap(true) {
		b.log.Info("etcd reachable again", "etcd", b.endpoints)
	}
}
