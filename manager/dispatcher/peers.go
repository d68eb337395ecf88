package dispatcher

import (
	"maps"
	"net"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// peerSet is what one session has told its agent about overlay networks:
// the networks its tasks join, and the tasks of other nodes on them.
//
// Peer entries travel in the assignment stream, not over gossip: the
// leader's store already knows every task's address and node, and the
// session already follows it and resends everything after a break, so the
// entries can neither disagree with the tasks nor outlive them; a task's
// entries go out in the same batch window (milliseconds) as the change
// that made them. Gossip would need a second, eventually consistent copy
// of the same facts (Docker's networkdb).
//
// Each change recomputes the node's view from a store view: linear in the
// cluster's tasks, which is fine for the clusters berth runs today.
type peerSet struct {
	node  string
	nets  map[string]*pb.Network
	peers map[string]*pb.NetworkPeer     // by network ID + "/" + task ID
	eps   map[string]*pb.ServiceEndpoint // by service ID + "/" + network ID
}

func newPeerSet(node string) *peerSet {
	return &peerSet{node: node, nets: map[string]*pb.Network{}, peers: map[string]*pb.NetworkPeer{},
		eps: map[string]*pb.ServiceEndpoint{}}
}

// full forgets what was sent and returns the complete view.
func (p *peerSet) full(tx store.ReadTx, tasks map[string]*pb.Task) []*pb.AssignmentChange {
	p.nets, p.peers, p.eps = map[string]*pb.Network{}, map[string]*pb.NetworkPeer{}, map[string]*pb.ServiceEndpoint{}
	add, _ := p.changes(tx, tasks)
	return add
}

// changes brings the view in line with the node's tasks: it returns the
// networks, peers and endpoints to add (networks first), and the
// endpoints, peers and networks to remove (networks last), so an agent
// applying them in order never has a peer or endpoint on a network it has
// not built.
func (p *peerSet) changes(tx store.ReadTx, tasks map[string]*pb.Task) (add, remove []*pb.AssignmentChange) {
	nets, peers, eps := p.want(tx, tasks)
	for _, id := range slices.Sorted(maps.Keys(nets)) {
		if old, ok := p.nets[id]; !ok || !proto.Equal(old, nets[id]) {
			add = append(add, &pb.AssignmentChange{Item: &pb.AssignmentChange_Network{Network: nets[id]}})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(peers)) {
		if old, ok := p.peers[k]; !ok || !proto.Equal(old, peers[k]) {
			add = append(add, &pb.AssignmentChange{Item: &pb.AssignmentChange_Peer{Peer: peers[k]}})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(eps)) {
		if old, ok := p.eps[k]; !ok || !proto.Equal(old, eps[k]) {
			add = append(add, &pb.AssignmentChange{Item: &pb.AssignmentChange_Endpoint{Endpoint: eps[k]}})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.eps)) {
		if _, ok := eps[k]; !ok {
			old := p.eps[k]
			remove = append(remove, &pb.AssignmentChange{Action: pb.AssignmentChange_ACTION_REMOVE,
				Item: &pb.AssignmentChange_Endpoint{Endpoint: &pb.ServiceEndpoint{ServiceId: old.GetServiceId(), NetworkId: old.GetNetworkId()}}})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.peers)) {
		if _, ok := peers[k]; !ok {
			remove = append(remove, &pb.AssignmentChange{Action: pb.AssignmentChange_ACTION_REMOVE,
				Item: &pb.AssignmentChange_Peer{Peer: p.peers[k]}})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(p.nets)) {
		if _, ok := nets[id]; !ok {
			remove = append(remove, &pb.AssignmentChange{Action: pb.AssignmentChange_ACTION_REMOVE,
				Item: &pb.AssignmentChange_Network{Network: &pb.Network{Id: id}}})
		}
	}
	p.nets, p.peers, p.eps = nets, peers, eps
	return add, remove
}

// want computes the networks the node's tasks join, the live tasks of
// other nodes on them, and the services on them with their tasks, and
// every service publishing ingress ports (the node answers on those
// ports whether or not it runs a task of theirs).
func (p *peerSet) want(tx store.ReadTx, tasks map[string]*pb.Task) (map[string]*pb.Network, map[string]*pb.NetworkPeer, map[string]*pb.ServiceEndpoint) {
	nets := map[string]*pb.Network{}
	for _, t := range tasks {
		for _, a := range t.GetNetworks() {
			if n := tx.GetNetwork(a.GetNetworkId()); n != nil {
				nets[n.GetId()] = n
			}
		}
	}
	peers := map[string]*pb.NetworkPeer{}
	if len(nets) == 0 && !anyIngress(tx) {
		return nets, peers, map[string]*pb.ServiceEndpoint{}
	}
	all, _ := tx.FindTasks(store.All)
	addrs := map[string]string{}
	nodeAddr := func(id string) string {
		node, ok := addrs[id]
		if !ok {
			node = underlay(tx.GetNode(id).GetDescription().GetAddr())
			addrs[id] = node
		}
		return node
	}
	eps := newEndpoints(tx, nets, nodeAddr)
	for _, t := range all {
		eps.add(t)
		if t.GetNodeId() == p.node || !onNode(t) {
			continue
		}
		for _, a := range t.GetNetworks() {
			if nets[a.GetNetworkId()] == nil || len(a.GetAddresses()) == 0 {
				continue
			}
			node := nodeAddr(t.GetNodeId())
			if node == "" {
				continue
			}
			peers[a.GetNetworkId()+"/"+t.GetId()] = &pb.NetworkPeer{NetworkId: a.GetNetworkId(), TaskId: t.GetId(),
				Address: a.GetAddresses()[0], NodeAddr: node}
		}
	}
	return nets, peers, eps.done()
}

// onNode says whether t's container may be up on its node: placed there
// and not yet reported ended.
func onNode(t *pb.Task) bool {
	s := t.GetStatus().GetState()
	return t.GetNodeId() != "" && s >= pb.TaskState_TASK_STATE_ASSIGNED && s <= pb.TaskState_TASK_STATE_RUNNING
}

// underlay is the IP of a node's address ("IP" or "IP:port"), or "".
func underlay(addr string) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.String()
		}
	}
	return ""
}
