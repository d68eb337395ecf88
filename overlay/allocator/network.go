package allocator

import (
	"errors"
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// DefaultNetwork is the name of the overlay that services naming no
// network join. The allocator creates it; users cannot remove it.
const DefaultNetwork = "default"

// defaultMaskLen is the size of the default network's subnet: every task
// of every service that names no network has an address on it, so a /24
// (Swarm's ingress) would cap such a cluster at 253 tasks.
const defaultMaskLen = 16

// firstVNI is above the VNIs Docker's overlay driver starts at (4096), so
// a hand-made VXLAN device of a test or an operator is unlikely to clash.
const firstVNI = 4096

// maxVNI is the largest 24-bit VXLAN network identifier.
const maxVNI = 1<<24 - 1

// ErrNoCluster says the Cluster object does not exist yet (a new cluster's
// first leader has not written it).
var ErrNoCluster = errors.New("the cluster object does not exist yet; retry in a moment")

// CreateNetwork gives n (not yet stored) its subnet, gateway and VNI and
// stores it, within tx. It takes n.Spec.Subnet when set, else the first
// free subnet of the cluster pool. It bumps the Cluster's last_vni in the
// same transaction, so two creations racing each other conflict on the
// Cluster's version (ErrSequenceConflict) instead of taking one subnet
// twice. Errors: an *ipam.OverlapError, one wrapping ipam.ErrExhausted,
// ErrNoCluster, or the store's.
func CreateNetwork(tx store.Tx, clusterID string, n *pb.Network) error {
	return createNetwork(tx, clusterID, n, 0)
}

// createNetwork is CreateNetwork carving a /maskLen from the pool, or the
// pool's subnet size when maskLen is 0 or smaller than the pool allows.
func createNetwork(tx store.Tx, clusterID string, n *pb.Network, maskLen int) error {
	c := tx.GetCluster(clusterID)
	if c == nil {
		return ErrNoCluster
	}
	nets, err := tx.FindNetworks(store.All)
	if err != nil {
		return fmt.Errorf("read networks: %w", err)
	}
	subnet, err := chooseSubnet(c.GetSpec(), n.GetSpec().GetSubnet(), maskLen, usedSubnets(nets))
	if err != nil {
		return err
	}
	vni := max(c.GetLastVni(), firstVNI) + 1
	if vni > maxVNI {
		return fmt.Errorf("no VXLAN identifier left (last given %d): %w", c.GetLastVni(), ipam.ErrExhausted)
	}
	sub, err := ipam.NewSubnet(subnet)
	if err != nil {
		return err
	}
	n.Subnet, n.Gateway, n.Vni = subnet.String(), sub.Gateway().String(), vni
	c = proto.Clone(c).(*pb.Cluster)
	c.LastVni = vni
	if err := tx.UpdateCluster(c); err != nil {
		return err
	}
	return tx.CreateNetwork(n)
}

// chooseSubnet checks the requested subnet against those in use, or
// carves the next free one from the cluster pool.
func chooseSubnet(spec *pb.ClusterSpec, requested string, maskLen int, used []ipam.Used) (netip.Prefix, error) {
	if requested != "" {
		p, err := netip.ParsePrefix(requested)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("subnet %q: %w", requested, err)
		}
		return p, ipam.CheckFree(p, used)
	}
	pool, poolMask, err := Pool(spec)
	if err != nil {
		return netip.Prefix{}, err
	}
	if maskLen < pool.Bits() || maskLen > poolMask {
		maskLen = poolMask
	}
	return ipam.NextSubnet(pool, maskLen, used)
}

// Pool returns the cluster's address pool and subnet size, with Docker's
// defaults (10.0.0.0/8 carved into /24s) for what the spec leaves unset.
func Pool(spec *pb.ClusterSpec) (netip.Prefix, int, error) {
	s := spec.GetAddressPool()
	if s == "" {
		s = ipam.DefaultPool
	}
	pool, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, 0, fmt.Errorf("cluster address pool %q: %w", s, err)
	}
	maskLen := int(spec.GetAddressPoolMaskLen())
	if maskLen == 0 {
		maskLen = ipam.DefaultMaskLen
	}
	return pool, maskLen, ipam.CheckPool(pool, maskLen)
}

func usedSubnets(nets []*pb.Network) []ipam.Used {
	out := make([]ipam.Used, 0, len(nets))
	for _, n := range nets {
		if p, err := netip.ParsePrefix(n.GetSubnet()); err == nil {
			out = append(out, ipam.Used{Prefix: p, Owner: n.GetSpec().GetAnnotations().GetName()})
		}
	}
	return out
}
