// Package dataplane builds one node's side of berth's overlay networks in
// the kernel, through netlink (never by forking ip or bridge: a netlink
// call costs ~30 µs, a fork ~2 ms, and a node installs an entry per
// remote task).
//
// Per network the node gets a bridge and a VXLAN device enslaved to it
// (one VNI per network, UDP 4789, learning off, ARP proxy on). Each local
// task gets a veth whose host end is a port of the bridge and whose other
// end, in the container's network namespace, carries the task's address
// and a MAC derived from it. Every remote task is a static FDB entry (its
// MAC → its node's underlay address) and a permanent neighbour entry (its
// IP → its MAC) on the VXLAN device, so the VXLAN device answers ARP
// itself and nothing floods between nodes. Each bridge carries its
// network's gateway address (the containers' way out, masqueraded, and
// where the agent's DNS server answers them); the isolation rules in the
// node's nftables table drop forwarding between two networks, so
// containers on different networks cannot reach each other.
//
// It also balances services' virtual IPs, in an nftables table in each
// client container (vip.go), and publishes ports, ingress (the routing
// mesh) and host mode, in the node's one nftables table beside the
// masquerade and isolation rules (publish.go, gateway.go). Traffic
// within a network and the VXLAN packets carrying it are exempt from
// connection tracking there (notrack.go): no rule of ours rewrites them.
//
// Every link and the table the package makes are named with
// Config.Prefix; Sweep removes what no running container uses, and makes
// the table anew, for a restarted agent or a test that crashed.
package dataplane
