package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Peer is a task on another node: its address on a network and the
// underlay address of its node.
type Peer struct {
	NetworkID string
	Addr      netip.Addr
	Node      netip.Addr
}

// SetPeer installs peer's entries on its network's VXLAN device: an FDB
// entry (its MAC → its node) and a permanent neighbour entry (its IP →
// its MAC), which the device answers ARP from. Setting them again, or
// moving the peer to another node, replaces them.
func (p *Plane) SetPeer(peer Peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nets[peer.NetworkID]
	if n == nil {
		return fmt.Errorf("dataplane: peer %s: network %s is not built on this node", peer.Addr, peer.NetworkID)
	}
	if old, ok := n.peers[peer.Addr]; ok && old.Node != peer.Node {
		if err := p.h.NeighDel(p.fdb(n, old)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("dataplane: peer %s: delete the old FDB entry: %w", peer.Addr, err)
		}
	}
	if err := p.h.NeighSet(p.fdb(n, peer)); err != nil {
		return fmt.Errorf("dataplane: peer %s: FDB entry to %s: %w", peer.Addr, peer.Node, err)
	}
	if err := p.h.NeighSet(p.neigh(n, peer)); err != nil {
		return fmt.Errorf("dataplane: peer %s: neighbour entry: %w", peer.Addr, err)
	}
	n.peers[peer.Addr] = peer
	return nil
}

// RemovePeer removes the entries of the peer with addr on network id;
// removing what is not there is a no-op.
func (p *Plane) RemovePeer(networkID string, addr netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nets[networkID]
	if n == nil {
		return nil
	}
	peer, ok := n.peers[addr]
	if !ok {
		return nil
	}
	delete(n.peers, addr)
	var errs []error
	for _, e := range []*netlink.Neigh{p.neigh(n, peer), p.fdb(n, peer)} {
		if err := p.h.NeighDel(e); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dataplane: remove peer %s: %w", addr, err)
	}
	return nil
}

func (p *Plane) fdb(n *network, peer Peer) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: n.vxlan.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, IP: peer.Node.AsSlice(), HardwareAddr: MAC(peer.Addr)}
}

func (p *Plane) neigh(n *network, peer Peer) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: n.vxlan.Attrs().Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, IP: peer.Addr.AsSlice(), HardwareAddr: MAC(peer.Addr)}
}
