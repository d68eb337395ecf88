package validate

import (
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

// MaxSecretSize is the largest secret accepted, as Docker's 500 KiB.
const MaxSecretSize = 500 * 1024

// NetworkSpec checks a network spec.
func NetworkSpec(s *pb.NetworkSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send a network spec")
	}
	if err := Name("name", s.GetAnnotations().GetName()); err != nil {
		return err
	}
	if err := labels("labels", s.GetAnnotations().GetLabels()); err != nil {
		return err
	}
	// Not built yet: refused rather than stored with no effect.
	if s.GetInternal() {
		return fieldErr("internal", "networks without outside access are not built yet", "create it without internal")
	}
	if d := s.GetDriver(); d != "" && d != "overlay" {
		return fieldErr("driver", fmt.Sprintf("unknown driver %s", quote(d)), "use overlay")
	}
	if sub := s.GetSubnet(); sub != "" {
		p, err := netip.ParsePrefix(sub)
		if err != nil || !p.Addr().Is4() {
			return fieldErr("subnet", fmt.Sprintf("%s is not an IPv4 CIDR", quote(sub)), "use a subnet such as 10.20.0.0/24")
		}
		if p.Bits() > 29 {
			return fieldErr("subnet", fmt.Sprintf("%s is too small", sub), "use a /29 or larger")
		}
		if p.Masked() != p {
			return fieldErr("subnet", fmt.Sprintf("%s has host bits set", sub), "use %s", p.Masked())
		}
	}
	return nil
}

// SecretSpec checks a secret spec.
func SecretSpec(s *pb.SecretSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send a secret spec")
	}
	return fileSpec("secret", s.GetAnnotations(), s.GetData(), MaxSecretSize)
}

// NodeSpec checks what a user sets on a node: the whole spec, as read
// from the node and changed.
func NodeSpec(s *pb.NodeSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send the node's whole spec: read it with GetNode, change it, send it back")
	}
	if _, ok := pb.NodeSpec_Availability_name[int32(s.GetAvailability())]; !ok {
		return fieldErr("availability", fmt.Sprintf("unknown availability %d", s.GetAvailability()), "use active, pause or drain")
	}
	if _, ok := pb.NodeSpec_Role_name[int32(s.GetDesiredRole())]; !ok {
		return fieldErr("role", fmt.Sprintf("unknown role %d", s.GetDesiredRole()), "use worker or manager")
	}
	if err := shortLen("name", s.GetAnnotations().GetName()); err != nil {
		return err
	}
	return labels("labels", s.GetAnnotations().GetLabels())
}

// ClusterSpec checks cluster settings.
func ClusterSpec(s *pb.ClusterSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send the cluster's whole spec: read it with GetCluster, change it, send it back")
	}
	if err := firstErr(shortLen("name", s.GetAnnotations().GetName()), labels("labels", s.GetAnnotations().GetLabels()),
		tooMany("insecure_registries", len(s.GetInsecureRegistries()), maxFilters, "list fewer registries"),
		each("insecure_registries", s.GetInsecureRegistries(), shortLen), shortLen("address_pool", s.GetAddressPool())); err != nil {
		return err
	}
	if err := heartbeatPeriod(s.GetHeartbeatPeriod()); err != nil {
		return err
	}
	if err := duration("cert_expiry", s.GetCertExpiry()); err != nil {
		return err
	}
	if s.GetTaskHistoryLimit() < 0 {
		return fieldErr("task_history_limit", "negative", "use 0 or more")
	}
	if pool := s.GetAddressPool(); pool != "" {
		p, err := netip.ParsePrefix(pool)
		if err != nil || !p.Addr().Is4() {
			return fieldErr("address_pool", fmt.Sprintf("%s is not an IPv4 CIDR", quote(pool)), "use a pool such as 10.0.0.0/8")
		}
		if m := int(s.GetAddressPoolMaskLen()); m != 0 && (m < p.Bits() || m > 29) {
			return fieldErr("address_pool_mask_len", fmt.Sprintf("/%d subnets do not fit pool %s", m, pool), "use a length from %d to 29", p.Bits())
		}
	}
	return nil
}

// PortConflict reports a published port of spec that another service
// (not serviceID itself) already publishes.
func PortConflict(serviceID string, spec *pb.ServiceSpec, others []*pb.Service) error {
	type key struct {
		port  uint32
		proto pb.PortConfig_Protocol
	}
	used := map[key]string{}
	for _, o := range others {
		if o.GetId() == serviceID {
			continue
		}
		for _, p := range o.GetSpec().GetEndpoint().GetPorts() {
			if p.GetPublishedPort() != 0 {
				used[key{p.GetPublishedPort(), p.GetProtocol()}] = o.GetSpec().GetAnnotations().GetName()
			}
		}
		for _, p := range o.GetEndpoint().GetPorts() { // ports the allocator picked
			if p.GetPublishedPort() != 0 {
				used[key{p.GetPublishedPort(), p.GetProtocol()}] = o.GetSpec().GetAnnotations().GetName()
			}
		}
	}
	for i, p := range spec.GetEndpoint().GetPorts() {
		if owner, ok := used[key{p.GetPublishedPort(), p.GetProtocol()}]; ok && p.GetPublishedPort() != 0 {
			return fieldErr(fmt.Sprintf("ports[%d].published", i), fmt.Sprintf("port %d is already published by service %q", p.GetPublishedPort(), owner), "pick another port, or leave it 0 to get a free one")
		}
	}
	return nil
}

// Bounds of a cluster's heartbeat period: shorter ones spend the
// managers on heartbeats and put nodes down on a scheduling hiccup;
// longer ones leave a dead node's tasks unreplaced for minutes when
// gossip cannot tell (its verdict waits for half a period of silence).
const (
	minHeartbeatPeriod = 100 * time.Millisecond
	maxHeartbeatPeriod = time.Minute
)

// heartbeatPeriod checks a cluster's heartbeat_period: 0 (the default)
// or within the bounds.
func heartbeatPeriod(d *durationpb.Duration) error {
	if err := duration("heartbeat_period", d); err != nil || d == nil || d.AsDuration() == 0 {
		return err
	}
	if p := d.AsDuration(); p < minHeartbeatPeriod || p > maxHeartbeatPeriod {
		return fieldErr("heartbeat_period", fmt.Sprintf("%s is out of range", p), "use a period from %s to %s, such as 1s", minHeartbeatPeriod, maxHeartbeatPeriod)
	}
	return nil
}
