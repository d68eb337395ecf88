package manager

import (
	"context"
	"time"

	"berth/ca"
	"berth/manager/dispatcher"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// cluster is the Cluster object as this manager's store holds it: nil
// until the first leader has written it.
func (m *Manager) cluster() *pb.Cluster {
	var c *pb.Cluster
	m.be.Store().View(func(tx store.ReadTx) { c = tx.GetCluster(m.clusterID) })
	return c
}

// heartbeatPeriod is the period agents heartbeat at now: the cluster
// spec's heartbeat_period, the one source every part reads (the
// dispatcher tells agents, gossip and the key rotator pace themselves by
// it), so `berth cluster update --heartbeat-period` changes it everywhere.
func (m *Manager) heartbeatPeriod() time.Duration { return heartbeatPeriod(m.cluster()) }

// heartbeatPeriod is c's heartbeat period, the default when it sets none.
func heartbeatPeriod(c *pb.Cluster) time.Duration {
	if d := c.GetSpec().GetHeartbeatPeriod().AsDuration(); d > 0 {
		return d
	}
	return dispatcher.DefaultHeartbeatPeriod
}

// insecureRegistries are the plain-HTTP registries handed to agents.
func (m *Manager) insecureRegistries() []string {
	return m.cluster().GetSpec().GetInsecureRegistries()
}

// gossipKeys are the cluster's gossip keys as the store holds them: the
// one to encrypt with and the others accepted meanwhile.
func (m *Manager) gossipKeys() (primary []byte, accept [][]byte) {
	return gossipKeys(m.cluster())
}

// JoinToken waits until the cluster object exists and returns its join
// token for role (ca.RoleWorker or ca.RoleManager).
func (m *Manager) JoinToken(ctx context.Context, role string) (string, error) {
	for {
		var c *pb.Cluster
		m.be.Store().View(func(tx store.ReadTx) { c = tx.GetCluster(m.clusterID) })
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
