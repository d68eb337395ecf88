package manager

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/internal/ids"
	"berth/manager/dispatcher"
	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// ensureCluster writes the Cluster object when the cluster has none: the
// first leader of a new cluster does it from what bootstrap left in its
// data dir. Every leader also records the insecure registries it was given.
func (m *Manager) ensureCluster(ctx context.Context) error {
	var cur *pb.Cluster
	m.be.Store().View(func(tx store.ReadTx) { cur = tx.GetCluster(m.clusterID) })
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
	err = m.be.Store().Update(ctx, func(tx store.Tx) error { return tx.CreateCluster(c) })
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
	return m.be.Store().Update(ctx, func(tx store.Tx) error {
		c := proto.Clone(tx.GetCluster(m.clusterID)).(*pb.Cluster)
		c.Spec.InsecureRegistries = append(c.Spec.InsecureRegistries, add...)
		return tx.UpdateCluster(c)
	})
}

// bootstrap makes a new cluster: its CA, its key and this first manager.
func (m *Manager) bootstrap() (*identity, error) {
	now := m.cfg.Now()
	clusterID, nodeID := ids.New(), ids.New()
	root, err := ca.NewRoot(clusterID, now)
	if err != nil {
		return nil, err
	}
	key, err := ca.NewClusterKey()
	if err != nil {
		return nil, err
	}
	caKey, err := root.KeyPEM()
	if err != nil {
		return nil, err
	}
	sealed, err := ca.Seal(key, caKey)
	if err != nil {
		return nil, err
	}
	if err := ca.WriteFileAtomic(m.path(clusterKeyFile), key, 0o600); err != nil {
		return nil, err
	}
	if err := ca.WriteFileAtomic(m.path(sealedCAKeyFile), sealed, 0o600); err != nil {
		return nil, err
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR()
	if err != nil {
		return nil, err
	}
	certPEM, err := root.Issue(ca.IssueRequest{CSRPEM: csrPEM, NodeID: nodeID, Role: ca.RoleManager, Lifetime: m.cfg.CertLifetime}, now)
	if err != nil {
		return nil, err
	}
	dir := ca.Dir(m.path(certsDir))
	if err := dir.Save(root.CertPEM, certPEM, keyPEM); err != nil {
		return nil, err
	}
	creds, err := dir.Load()
	if err != nil {
		return nil, err
	}
	m.log.Info("bootstrapped a new cluster", "cluster", clusterID, "node", nodeID)
	return &identity{creds: creds, clusterKey: key, bootstrapped: true}, nil
}
