package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"berth/agent/image"
	"berth/agent/runtime"
	"berth/ca"
	pb "berth/proto/berth/v1"
)

// endpointDrain is how long a stopping task with endpoints keeps serving
// after the managers withdrew it, while other nodes drop it from their VIP
// maps and DNS answers (see controller.drain). Those updates take
// milliseconds; a second leaves room for a loaded node.
const endpointDrain = time.Second

// Config configures an Agent.
type Config struct {
	// DataDir holds everything the node keeps: certs/ (its identity),
	// images/, runtime/ (containers, logs, volumes) and secrets/ (a tmpfs).
	DataDir string
	// Join lists manager addresses (host:port) to join through and to fall
	// back to when the managers a session named are unreachable.
	Join []string
	// Token is the join token; needed only while the node has no identity.
	Token string
	// AdvertiseAddr is the IP other nodes reach this node on; empty means
	// the local address that routes to the manager.
	AdvertiseAddr string
	// Overlay builds overlay networks (overlay/dataplane) in the agent's
	// network namespace and gives containers their addresses on them;
	// false runs containers with loopback only.
	Overlay bool
	// ResolvConf is the resolv.conf whose nameservers get the names the
	// node's DNS server does not answer, and whose search domains and
	// options containers get; empty means /etc/resolv.conf.
	ResolvConf string
	// Labels are the node's engine labels (--label k=v).
	Labels map[string]string
	// InsecureRegistries are plain-HTTP registries (host:port) in addition
	// to those the cluster sets.
	InsecureRegistries []string
	// Hostname overrides the host's name in the node description.
	Hostname string
	// CgroupParent is the cgroup of all containers ("/berth" when empty).
	CgroupParent string
	// MaxLayerSize and MaxLayerEntries bound what one image layer may
	// unpack to, as image.Config's fields of those names: zero means the
	// default, negative no limit.
	MaxLayerSize, MaxLayerEntries int64
	// OnGossip, if set, receives the cluster's gossip keys and peers from
	// each session message that carries them: key is the one to encrypt
	// with, accept the others to accept meanwhile (a rotation in
	// progress); a key no longer listed is to be dropped.
	OnGossip func(key []byte, accept [][]byte, peers []string)
	// OnDesiredRole, if set, receives the role the managers want this
	// node to have, from each session message that carries it (the first
	// of every session, and each change). Manager means the node was
	// promoted: the caller may get a manager certificate with
	// ManagerCertificate and run a manager beside the agent. It is called
	// on the session's goroutine and must not block.
	OnDesiredRole func(role pb.NodeSpec_Role)
	// Metrics, if set, is the registry the agent's metrics go to
	// (container starts, image pulls); nil counts nothing.
	Metrics prometheus.Registerer
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of status timestamps; nil means time.Now.
	Now func() time.Time
}

// Agent is a worker node's daemon: it joins the cluster, keeps a session
// with a manager and runs the tasks assigned to the node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	images  *image.Store
	rt      *runtime.Runtime
	secrets *tmpfsFiles
	names   *names // nil without overlay networking
	peers   *peers
	link    link
	worker  *worker
	attach  *attachments
	report  *reporter
	ran     atomic.Bool

	// set by Run before anything reads them
	creds       *ca.Credentials
	nodeID      atomic.Value // string
	lastSession string
}

// New opens the node's image store and container runtime under DataDir.
// It does no network I/O; Run joins and serves.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" || !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("agent data dir %q: give an absolute path", cfg.DataDir)
	}
	if len(cfg.Join) == 0 {
		return nil, errors.New("agent: no manager to join: give at least one --join address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent data dir: %w", err)
	}
	images, err := image.New(image.Config{Root: filepath.Join(cfg.DataDir, "images"), Insecure: cfg.InsecureRegistries, Logger: cfg.Logger,
		MaxLayerSize: cfg.MaxLayerSize, MaxLayerEntries: cfg.MaxLayerEntries})
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(cfg.DataDir, "runtime"), CgroupParent: cfg.CgroupParent, Logger: cfg.Logger, SpareInit: true})
	if err != nil {
		images.Close()
		return nil, fmt.Errorf("open container runtime: %w", err)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, images: images, rt: rt,
		peers: newPeers(cfg.Join).withSaved(loadManagers(cfg.DataDir)),
	}
	a.peers.save = func(addrs []string) {
		if err := saveManagers(cfg.DataDir, addrs); err != nil {
			a.log.Warn("record the managers of the session", "err", err)
		}
	}
	store := newFileStore()
	a.secrets = &tmpfsFiles{dir: filepath.Join(cfg.DataDir, "secrets"), store: store}
	a.report = newReporter(a.sendStatuses, a.log)
	env := &taskEnv{
		exec:    meter(&localExecutor{images: images, rt: rt}, cfg.Metrics),
		secrets: a.secrets,
		report:  a.report.Put,
		forget:  a.report.forget,
		drain:   endpointDrain,
		now:     cfg.Now,
		log:     a.log,
	}
	a.worker = newWorker(env, store)
	a.worker.others = func() map[string]bool { return runContainers(cfg.DataDir) }
	a.attach = newAttachments(filepath.Join(cfg.DataDir, "attachments"), a, a.report.PutNow, a.report.forget, a.log.With("part", "attach"))
	a.attach.now = cfg.Now
	a.worker.attach = a.attach
	if cfg.Overlay {
		o := newOverlay(a.underlay, a.log.With("part", "overlay"))
		env.net, a.worker.net, a.attach.net = o, o, o
		resolv := cfg.ResolvConf
		if resolv == "" {
			resolv = "/etc/resolv.conf"
		}
		a.names = newNames(filepath.Join(cfg.DataDir, "resolv"), resolv, a.log.With("part", "dns"))
		env.dns, a.worker.names = a.names, a.names
		a.attach.dns = a.names.server
	}
	a.nodeID.Store("")
	return a, nil
}

// RunDir holds the containers of berth-agent run under the data dir,
// apart from the daemon's ("runtime"). They share the image store.
const RunDir = "run"

// runContainers lists the IDs of berth-agent run's containers under
// dataDir, those being made included: each has its log dir from the
// start (agent/runtime), before its record.
func runContainers(dataDir string) map[string]bool {
	ents, _ := os.ReadDir(filepath.Join(dataDir, RunDir, "containers"))
	ids := map[string]bool{}
	for _, e := range ents {
		ids[e.Name()] = true
	}
	return ids
}

// underlay is the address other nodes reach this node's VXLAN devices on:
// the advertise address, or the local one that routes to a manager, or
// the host's own when that one is loopback.
func (a *Agent) underlay() (netip.Addr, error) {
	addr := a.cfg.AdvertiseAddr
	if addr == "" {
		addr = localAddrTowards(a.cfg.Join[0])
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no usable address %q; give --advertise-addr", addr)
	}
	if ip.IsLoopback() && a.cfg.AdvertiseAddr == "" {
		return hostAddr()
	}
	return ip, nil
}

// NodeID is the node's ID once Run has loaded or obtained its identity.
func (a *Agent) NodeID() string { return a.nodeID.Load().(string) }

// Run joins the cluster (or loads the identity of an earlier join),
// adopts the containers a previous agent left running, and then keeps a
// session with the managers, runs the assigned tasks and renews the
// node's certificate until ctx ends. Containers keep running after Run
// returns; a new Agent on the same DataDir adopts them. Run may be called
// once; errors.Is(err, ErrJoinRefused) when the cluster refused the node.
func (a *Agent) Run(ctx context.Context) error {
	if a.ran.Swap(true) {
		return errors.New("agent: Run called twice")
	}
	defer a.close()
	creds, err := a.identity(ctx)
	if err != nil {
		return err
	}
	a.creds = creds
	a.nodeID.Store(creds.Identity().NodeID)
	a.log = a.log.With("node", creds.Identity().NodeID)
	a.worker.env.log = a.log
	a.log.Info("node identity", "node", creds.Identity().NodeID, "role", creds.Identity().Role, "expires", creds.Leaf().NotAfter)
	if err := a.secrets.setup(); err != nil {
		return err
	}
	if adopted, err := a.rt.Adopt(ctx); err != nil {
		a.log.Warn("adopting containers", "err", err, "adopted", len(adopted))
	}
	if err := a.attach.load(); err != nil {
		a.log.Warn("adopting standalone containers' attachments", "err", err)
	}
	renewer := &ca.Renewer{Creds: creds, Dir: ca.Dir(filepath.Join(a.cfg.DataDir, "certs")), Issue: a.renewCert, Log: a.log}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.worker.Run(gctx) })
	g.Go(func() error { return a.report.Run(gctx) })
	g.Go(func() error { return a.sessions(gctx) })
	g.Go(func() error { return renewer.Run(gctx) })
	g.Go(func() error { return a.attach.run(gctx) })
	g.Go(func() error {
		// berth-agent run --network needs it; the node runs its tasks without.
		if err := serveLocal(gctx, a.localSocket(), &localAPI{att: a.attach}); err != nil {
			a.log.Error("cannot serve berth-agent run --network on this node", "socket", a.localSocket(), "err", err)
		}
		return nil
	})
	return g.Wait()
}

// close stops the DNS server, detaches from the containers (they keep
// running), unmounts the secrets tmpfs and closes the image store.
func (a *Agent) close() {
	if err := a.secrets.teardown(); err != nil {
		a.log.Warn("unmount the secrets tmpfs", "err", err)
	}
	if a.names != nil {
		a.names.close()
	}
	a.rt.Close()
	if err := a.images.Close(); err != nil {
		a.log.Warn("close image store", "err", err)
	}
}
