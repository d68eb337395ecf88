package discovery

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// KeySize is the length in bytes of the gossip encryption key (AES-256).
const KeySize = 32

// GossipConfig describes one gossip member.
type GossipConfig struct {
	// NodeID is the member's name in the gossip layer; it is the berth node
	// ID, so events and members are keyed by it. Required.
	NodeID string
	// BindAddr is the IP the gossip UDP and TCP sockets listen on; empty
	// means 0.0.0.0. Bind a specific IP (e.g. a network namespace's
	// address) to keep gossip on that interface.
	BindAddr string
	// BindPort is the UDP and TCP port; 0 picks a free one (see Addr).
	BindPort int
	// AdvertiseAddr and AdvertisePort are what other members are told to
	// use; empty/0 mean the bound address and port. With BindAddr 0.0.0.0
	// and no AdvertiseAddr, memberlist picks the host's private IP.
	AdvertiseAddr string
	AdvertisePort int
	// Key is the cluster's 32-byte gossip key (AES-256-GCM). All gossip is
	// encrypted and unencrypted packets are refused, so a node without the
	// key cannot join. Managers hand it to joining nodes. Required.
	Key []byte
	// AcceptKeys are further 32-byte keys accepted from peers (never used
	// to encrypt) while the cluster's key rotates; see Gossip.SetKeys.
	AcceptKeys [][]byte
	// Role ("manager" or "worker") and APIAddr (the node's berth API
	// address, if any) are published to other members as node metadata.
	Role    string
	APIAddr string
	// Meta is further small metadata published with the node. Role,
	// APIAddr and Meta together must encode to at most 512 bytes.
	Meta map[string]string
	// Logger receives the package's and memberlist's logs; nil discards.
	Logger *slog.Logger
	// Timing tunes failure detection; zero fields take LANTiming's values.
	Timing Timing

	// tweak, when set by this package's tests, adjusts memberlist's
	// configuration last (fault-injecting transport, shorter timers).
	tweak func(*memberlist.Config)
}

// Timing holds the failure-detection knobs. LANTiming gives the defaults.
//
// The time to declare a silent member dead is roughly: wait until some
// peer probes it (on average under one ProbeInterval, since every peer
// probes one member per interval) + one ProbeInterval for the direct,
// indirect and TCP probes to fail + the suspicion timeout
// (SuspicionMult × ProbeInterval × max(1, log10(members))) + a few
// GossipIntervals to spread the verdict. LANTiming makes that ~0.9 s for
// clusters under 10 nodes and ~1.5 s at 100 nodes.
//
// The trade-off is false positives: a healthy member that cannot answer a
// probe within ProbeInterval, and then cannot refute the suspicion within
// the suspicion timeout (0.6 s here), is declared dead. That needs the
// member (or every prober) starved of CPU or network for ~0.7 s; the tests
// check a 5-member cluster under -race with every core busy stays clean.
// memberlist's Lifeguard extensions help: a prober that itself misses acks
// slows its probing (AwarenessMaxMultiplier), and a falsely declared member
// refutes and is Alive again in the next gossip round. Raise ProbeInterval
// and SuspicionMult for WAN links or heavily overcommitted hosts.
type Timing struct {
	// ProbeInterval is how often each member probes one other member.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct UDP ping waits for its ack before
	// indirect pings through IndirectChecks other members are sent.
	ProbeTimeout time.Duration
	// IndirectChecks is how many members are asked to ping on our behalf.
	IndirectChecks int
	// SuspicionMult scales the suspicion timeout. At 2 no confirmations
	// from other members are awaited (memberlist expects SuspicionMult-2),
	// so one prober's suspicion becomes death after 2 × ProbeInterval
	// unless the member refutes it.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the timeout while confirmations are
	// awaited; it only matters when SuspicionMult > 2.
	SuspicionMaxTimeoutMult int
	// GossipInterval is how often queued messages are gossiped to
	// GossipNodes random members: it bounds how fast a verdict spreads.
	GossipInterval time.Duration
	GossipNodes    int
	// TCPTimeout bounds TCP dials for joins, push-pull syncs and the TCP
	// fallback ping; on a LAN a second is plenty.
	TCPTimeout time.Duration
	// PushPullInterval is how often a full state sync with one random
	// member runs; it repairs anything gossip missed.
	PushPullInterval time.Duration
	// DeadNodeReclaim is how long after a member died its NodeID may come
	// back from a different address (a restarted agent on a new port).
	DeadNodeReclaim time.Duration
	// ReconnectInterval is how often one dead (not left) member is
	// re-joined, so that members split by a network cut merge again
	// once it heals; ReconnectFor is how long after death we keep trying.
	ReconnectInterval time.Duration
	ReconnectFor      time.Duration
	// BroadcastTimeout bounds Leave and SetMeta when their context has no
	// deadline.
	BroadcastTimeout time.Duration
}

// LANTiming returns timing tuned for nodes on one LAN (sub-millisecond
// RTT): a powered-off member is declared dead in about 0.7 s.
func LANTiming() Timing {
	return Timing{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            150 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		TCPTimeout:              time.Second,
		PushPullInterval:        10 * time.Second,
		DeadNodeReclaim:         100 * time.Millisecond,
		ReconnectInterval:       2 * time.Second,
		ReconnectFor:            time.Hour,
		BroadcastTimeout:        2 * time.Second,
	}
}

// withDefaults fills zero fields from LANTiming.
func (t Timing) withDefaults() Timing {
	d := LANTiming()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&t.ProbeInterval, d.ProbeInterval)
	setDur(&t.ProbeTimeout, d.ProbeTimeout)
	setInt(&t.IndirectChecks, d.IndirectChecks)
	setInt(&t.SuspicionMult, d.SuspicionMult)
	setInt(&t.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	setDur(&t.GossipInterval, d.GossipInterval)
	setInt(&t.GossipNodes, d.GossipNodes)
	setDur(&t.TCPTimeout, d.TCPTimeout)
	setDur(&t.PushPullInterval, d.PushPullInterval)
	setDur(&t.DeadNodeReclaim, d.DeadNodeReclaim)
	setDur(&t.ReconnectInterval, d.ReconnectInterval)
	setDur(&t.ReconnectFor, d.ReconnectFor)
	setDur(&t.BroadcastTimeout, d.BroadcastTimeout)
	return t
}

// nodeMeta is what a member publishes about itself; short keys keep it
// well under memberlist's 512-byte limit.
type nodeMeta struct {
	Role    string            `json:"r,omitempty"`
	APIAddr string            `json:"a,omitempty"`
	Meta    map[string]string `json:"m,omitempty"`
}

func encodeMeta(m nodeMeta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node metadata is %d bytes encoded, limit %d: shorten Role, APIAddr or Meta",
			len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nodeMeta{}, fmt.Errorf("decode node metadata: %w", err)
	}
	return m, nil
}

// validate checks the fields a caller must get right.
func (c *GossipConfig) validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("gossip config: NodeID is required")
	}
	switch len(c.Key) {
	case 0:
		return fmt.Errorf("gossip config: Key is required: every member needs the cluster's %d-byte gossip key (managers hand it to joining nodes)", KeySize)
	case KeySize:
	default:
		return fmt.Errorf("gossip config: Key is %d bytes, want %d (AES-256)", len(c.Key), KeySize)
	}
	for i, k := range c.AcceptKeys {
		if len(k) != KeySize {
			return fmt.Errorf("gossip config: AcceptKeys[%d] is %d bytes, want %d (AES-256)", i, len(k), KeySize)
		}
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("gossip config: BindPort %d out of range 0-65535", c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("gossip config: AdvertisePort %d out of range 0-65535", c.AdvertisePort)
	}
	return nil
}

// memberlistConfig builds memberlist's configuration from ours, starting
// from its LAN defaults, with the member's keyring.
func (c *GossipConfig) memberlistConfig(t Timing, d *delegate, keys *memberlist.Keyring, logger *slog.Logger) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeID
	mc.BindAddr = c.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = c.BindPort // memberlist sets it itself when BindPort is 0
	}
	// All gossip is encrypted, with the keyring's keys.
	mc.Keyring = keys
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true

	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.IndirectChecks = t.IndirectChecks
	mc.SuspicionMult = t.SuspicionMult
	mc.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	mc.GossipInterval = t.GossipInterval
	mc.GossipNodes = t.GossipNodes
	mc.TCPTimeout = t.TCPTimeout
	mc.PushPullInterval = t.PushPullInterval
	mc.DeadNodeReclaimTime = t.DeadNodeReclaim

	mc.Delegate = d
	mc.Events = d
	mc.Logger = newMemberlistLogger(logger)
	if c.tweak != nil {
		c.tweak(mc)
	}
	return mc
}

// hostPort formats a memberlist node's address.
func hostPort(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}
