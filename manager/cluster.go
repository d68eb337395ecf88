package manager

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/manager/admit"
	"berth/manager/dispatcher"
	"berth/manager/nodeca"
	"berth/manager/raftapi"
	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/raftstore"
)

// ensureCluster writes the Cluster object when the cluster has none: the
// first leader of a new cluster does it from what bootstrap left in its
// data dir. Every leader also records the insecure registries it was given.
func (m *Manager) ensureCluster(ctx context.Context) error {
	var cur *pb.Cluster
	m.node.Store().View(func(tx store.ReadTx) { cur = tx.GetCluster(m.clusterID) })
	if cur != nil {
		return m.updateRegistries(ctx, cur)
	}
	sealed, err := os.ReadFile(m.path(sealedCAKeyFile))
	if err != nil {
		return fmt.Errorf("cluster state has no Cluster object and this manager did not bootstrap it: %w", err)
	}
	rootPEM := m.rootPEM()
	hash := ca.CertHash(rootPEM)
	worker, err := ca.NewToken(hash)
	if err != nil {
		return err
	}
	manager, err := ca.NewToken(hash)
	if err != nil {
		return err
	}
	gossip, err := ca.NewClusterKey()
	if err != nil {
		return err
	}
	c := &pb.Cluster{
		Id: m.clusterID,
		Spec: &pb.ClusterSpec{
			Annotations:        &pb.Annotations{Name: "default"},
			HeartbeatPeriod:    durationpb.New(cmp.Or(m.cfg.HeartbeatPeriod, dispatcher.DefaultHeartbeatPeriod)),
			TaskHistoryLimit:   5,
			CertExpiry:         durationpb.New(m.cfg.CertLifetime),
			InsecureRegistries: m.cfg.InsecureRegistries,
			AddressPool:        cmp.Or(m.cfg.AddressPool, ipam.DefaultPool),
			AddressPoolMaskLen: uint32(cmp.Or(m.cfg.AddressPoolMaskLen, ipam.DefaultMaskLen)),
		},
		JoinTokens: &pb.JoinTokens{Worker: worker.String(), Manager: manager.String()},
		RootCa:     &pb.RootCA{CaCert: rootPEM, CaKey: sealed, CaCertHash: hash},
		GossipKey:  gossip,
		// The key's age, from which the next rotation falls due.
		GossipRotation: &pb.GossipKeyRotation{CreatedAt: timestamppb.New(m.cfg.Now())},
	}
	err = m.node.Store().Update(ctx, func(tx store.Tx) error { return tx.CreateCluster(c) })
	if err != nil && !errors.Is(err, store.ErrExist) {
		return fmt.Errorf("create cluster object: %w", err)
	}
	m.log.Info("cluster object created", "cluster", m.clusterID)
	return os.Remove(m.path(sealedCAKeyFile))
}

// checkAddressPool checks the --default-addr-pool flags before anything
// starts, so a bad pool never reaches the cluster state.
func checkAddressPool(pool string, maskLen int) error {
	pool = cmp.Or(pool, ipam.DefaultPool)
	p, err := netip.ParsePrefix(pool)
	if err != nil {
		return fmt.Errorf("--default-addr-pool %q is not a CIDR; use one such as %s", pool, ipam.DefaultPool)
	}
	if err := ipam.CheckPool(p, cmp.Or(maskLen, ipam.DefaultMaskLen)); err != nil {
		return fmt.Errorf("--default-addr-pool %s --default-addr-pool-mask-len %d: %w", pool, cmp.Or(maskLen, ipam.DefaultMaskLen), err)
	}
	return nil
}

// updateRegistries adds this manager's --insecure-registry entries to the
// cluster-wide list.
func (m *Manager) updateRegistries(ctx context.Context, cur *pb.Cluster) error {
	have := map[string]bool{}
	for _, r := range cur.GetSpec().GetInsecureRegistries() {
		have[r] = true
	}
	var add []string
	for _, r := range m.cfg.InsecureRegistries {
		if !have[r] {
			add = append(add, r)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return m.node.Store().Update(ctx, func(tx store.Tx) error {
		c := proto.Clone(tx.GetCluster(m.clusterID)).(*pb.Cluster)
		c.Spec.InsecureRegistries = append(c.Spec.InsecureRegistries, add...)
		return tx.UpdateCluster(c)
	})
}

// ErrRemoved ends Run when this manager is no longer a Raft voter.
var ErrRemoved = errors.New("this manager was demoted or removed from the cluster")

// membershipPoll is how often a manager checks it still has a vote.
const membershipPoll = 250 * time.Millisecond

// removedGrace is how long a removed manager keeps serving, so that
// in-flight calls (the demotion itself) are answered.
const removedGrace = time.Second

// registerSelf records this manager's own Node (ready, with its
// description) and writes the CLI bundle, once the cluster state allows
// it; it retries while the cluster has no leader. Meanwhile it watches
// this manager's membership and returns ErrRemoved when it loses its vote
// (see watchMembership).
func (m *Manager) registerSelf(ctx context.Context) error {
	registered := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.watchMembership(gctx, registered) })
	g.Go(func() error {
		if !m.register(gctx) {
			return nil
		}
		close(registered)
		// Keep the CLI's bundle fresh on a manager that runs for months:
		// it is rewritten once it enters the last third of its life.
		t := time.NewTicker(bundleCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := m.writeClientBundle(); err != nil {
					m.log.Warn("renew the client bundle", "err", err)
				}
			}
		}
	})
	return g.Wait()
}

// bundleCheckEvery is how often a manager checks its client bundle's age.
const bundleCheckEvery = time.Hour

// register writes this manager's Node and the client bundle, retrying
// until it succeeds (true) or ctx ends (false).
func (m *Manager) register(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		err := m.writeSelf(ctx)
		if err == nil {
			err = m.writeClientBundle()
		}
		if err == nil {
			return true
		}
		m.log.Debug("registering this manager; will retry", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second)):
		}
	}
}

func (m *Manager) writeSelf(ctx context.Context) error {
	hostname, _ := os.Hostname()
	now := timestamppb.New(m.cfg.Now())
	desc := &pb.NodeDescription{
		Hostname: hostname, Addr: m.advertise,
		Platform:  &pb.Platform{Os: runtime.GOOS, Architecture: runtime.GOARCH},
		Resources: &pb.ResourceSet{NanoCpus: int64(runtime.NumCPU()) * 1e9},
	}
	return m.node.Store().Update(ctx, func(tx store.Tx) error {
		if tx.GetCluster(m.clusterID) == nil {
			return errors.New("no cluster object yet")
		}
		n := tx.GetNode(m.nodeID)
		if n == nil {
			return tx.CreateNode(&pb.Node{
				Id: m.nodeID, Role: pb.NodeSpec_ROLE_MANAGER, Description: desc,
				Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{}, DesiredRole: pb.NodeSpec_ROLE_MANAGER, Availability: nodeca.ManagerAvailability(pb.NodeSpec_ROLE_MANAGER)},
				Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY, ChangedAt: now},
			})
		}
		n = proto.Clone(n).(*pb.Node)
		switch {
		case n.Description == nil:
			n.Description = desc
		case !m.cfg.SharedNode:
			n.Description.Hostname, n.Description.Addr, n.Description.Platform = desc.Hostname, desc.Addr, desc.Platform
		}
		// A promoted node is a manager once its manager has a vote and
		// registers (a manager demoted, or removed and restarted, is not
		// made one again).
		if n.GetRole() != pb.NodeSpec_ROLE_MANAGER && n.GetSpec().GetDesiredRole() == pb.NodeSpec_ROLE_MANAGER {
			if voter, _ := m.isVoter(); !voter {
				return errors.New("promoted, but not a raft voter yet")
			}
			n.Role = pb.NodeSpec_ROLE_MANAGER
		}
		if n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
			n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_READY, ChangedAt: now}
		}
		return tx.UpdateNode(n)
	})
}

// writeClientBundle writes DATA_DIR/client: a client certificate the CLI
// uses on this host, and the address of this manager.
func (m *Manager) writeClientBundle() error {
	root, err := m.ca.Root()
	if err != nil {
		return err
	}
	// The address may have changed even when the bundle stays.
	if err := ca.WriteFileAtomic(filepath.Join(m.path(clientDir), "manager-addr"), []byte(m.advertise+"\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var dirs []string
	if !m.bundleCurrent(m.path(clientDir), root.CertPEM) {
		dirs = append(dirs, m.path(clientDir))
	}
	if d := m.cfg.InstallClientBundle; d != "" {
		if _, err := os.Stat(filepath.Join(d, ca.RootFile)); errors.Is(err, os.ErrNotExist) {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil // nothing to write: no certificate to issue
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return err
	}
	cert, err := root.Issue(ca.IssueRequest{CSRPEM: csrPEM, NodeID: admit.ClientID(m.nodeID), Role: ca.RoleClient, Lifetime: m.certLifetime()}, m.cfg.Now())
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := ca.Dir(d).Save(root.CertPEM, cert, keyPEM); err != nil {
			return err
		}
		if err := ca.WriteFileAtomic(filepath.Join(d, "manager-addr"), []byte(m.advertise+"\n"), 0o644); err != nil {
			return err
		}
	}
	m.log.Info("client bundle written", "dirs", dirs)
	return nil
}

// bundleCurrent says whether dir holds a client bundle of this cluster's
// CA that is good for at least another third of its life. A restarted
// manager keeps such a bundle rather than rewriting it under a CLI that
// may be reading it (a reader between the cert and the key of a rewrite
// would see a mismatched pair).
func (m *Manager) bundleCurrent(dir string, rootPEM []byte) bool {
	root, certPEM, keyPEM, err := ca.Dir(dir).Read()
	if err != nil || !bytes.Equal(root, rootPEM) {
		return false
	}
	creds, err := ca.NewCredentials(root, certPEM, keyPEM)
	if err != nil {
		return false
	}
	leaf := creds.Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return m.cfg.Now().Before(leaf.NotAfter.Add(-life / 3))
}

// JoinToken waits until the cluster object exists and returns its join
// token for role (ca.RoleWorker or ca.RoleManager).
func (m *Manager) JoinToken(ctx context.Context, role string) (string, error) {
	for {
		var c *pb.Cluster
		m.node.Store().View(func(tx store.ReadTx) { c = tx.GetCluster(m.clusterID) })
		if c != nil {
			if role == ca.RoleManager {
				return c.GetJoinTokens().GetManager(), nil
			}
			return c.GetJoinTokens().GetWorker(), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// membership is the Raft membership the Control API changes (demote): a
// removal asked of a follower is made by the leader, which alone knows
// which managers are reachable and so whether quorum would survive.
type membership struct {
	*raftstore.Node
	peers *raftapi.Peers
}

// RemoveServer removes manager id through the leader, wherever it is asked.
func (ms membership) RemoveServer(ctx context.Context, id string) error {
	if ms.IsLeader() {
		err := ms.Node.RemoveServer(ctx, id)
		if !errors.Is(err, store.ErrNotLeader) {
			return err
		}
	}
	_, addr := ms.Leader()
	if addr == "" {
		return ms.Node.RemoveServer(ctx, id) // says why there is no leader
	}
	return ms.peers.Leave(ctx, addr, id)
}

// watchMembership returns ErrRemoved once this manager has lost its vote
// (demoted, or removed while down). Such a manager gets no more Raft
// entries: serving on would answer reads from stale state or let calls
// hang, so Run ends and says what to do. A manager that joins in this run
// replays configurations from before it was added; it counts as a member
// once registered (its own write, forwarded to the leader and applied
// here, comes after the entry that added it).
func (m *Manager) watchMembership(ctx context.Context, registered <-chan struct{}) error {
	t := time.NewTicker(membershipPoll)
	defer t.Stop()
	for {
		member := !m.id.joined || isClosed(registered)
		if voter, known := m.isVoter(); member && known && !voter {
			// The call that demoted this manager may have come through
			// it: let its answer go out before the server stops.
			select {
			case <-ctx.Done():
			case <-time.After(removedGrace):
			}
			return fmt.Errorf("manager %s: %w: it left the Raft cluster and holds no current state; "+
				"to make this host a manager again, start berth-manager with an empty --data-dir, --join and a token from `berth cluster join-token manager`", m.nodeID, ErrRemoved)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// isVoter reports whether this manager votes in its latest known Raft
// configuration; known is false while that configuration is empty.
func (m *Manager) isVoter() (voter, known bool) {
	members, err := m.node.Members()
	if err != nil || len(members) == 0 {
		return false, false
	}
	for _, mem := range members {
		if mem.GetNodeId() == m.nodeID {
			return mem.GetVoter(), true
		}
	}
	return false, true
}
