package store

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "berth/proto/berth/v1"
)

// CreateNode stores a new node; its ID must be unused.
func (w *writeTx) CreateNode(o *berthv1.Node) error { return w.create(nodes, o) }

// UpdateNode replaces a node; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateNode(o *berthv1.Node) error { return w.update(nodes, o) }

// DeleteNode removes the node with that ID and, in the same change,
// remembers the ID as removed: the node's certificate may outlive it, and
// no node with that ID is created again (ErrNodeRemoved).
func (w *writeTx) DeleteNode(id string) error {
	if err := w.remove(nodes, id); err != nil {
		return err
	}
	r := &berthv1.RemovedNode{Id: id, RemovedAt: timestamppb.New(w.now())}
	if cur := w.GetRemovedNode(id); cur != nil {
		r.Meta = cur.GetMeta()
		return w.update(removedNodes, r)
	}
	return w.create(removedNodes, r)
}

// CreateService stores a new service; its ID must be unused.
func (w *writeTx) CreateService(o *berthv1.Service) error { return w.create(services, o) }

// UpdateService replaces a service; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateService(o *berthv1.Service) error { return w.update(services, o) }

// DeleteService removes the service with that ID.
func (w *writeTx) DeleteService(id string) error { return w.remove(services, id) }

// CreateTask stores a new task; its ID must be unused.
func (w *writeTx) CreateTask(o *berthv1.Task) error { return w.create(tasks, o) }

// UpdateTask replaces a task; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateTask(o *berthv1.Task) error { return w.update(tasks, o) }

// DeleteTask removes the task with that ID.
func (w *writeTx) DeleteTask(id string) error { return w.remove(tasks, id) }

// CreateNetwork stores a new network; its ID must be unused.
func (w *writeTx) CreateNetwork(o *berthv1.Network) error { return w.create(networks, o) }

// UpdateNetwork replaces a network; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateNetwork(o *berthv1.Network) error { return w.update(networks, o) }

// DeleteNetwork removes the network with that ID.
func (w *writeTx) DeleteNetwork(id string) error { return w.remove(networks, id) }

// CreateSecret stores a new secret; its ID must be unused.
func (w *writeTx) CreateSecret(o *berthv1.Secret) error { return w.create(secrets, o) }

// UpdateSecret replaces a secret; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateSecret(o *berthv1.Secret) error { return w.update(secrets, o) }

// DeleteSecret removes the secret with that ID.
func (w *writeTx) DeleteSecret(id string) error { return w.remove(secrets, id) }

// CreateConfig stores a new config; its ID must be unused. Configs do not
// change once made, as Docker's: a new version is a new config.
func (w *writeTx) CreateConfig(o *berthv1.Config) error { return w.create(configs, o) }

// DeleteConfig removes the config with that ID.
func (w *writeTx) DeleteConfig(id string) error { return w.remove(configs, id) }

// CreateCluster stores a new cluster; its ID must be unused.
func (w *writeTx) CreateCluster(o *berthv1.Cluster) error { return w.create(clusters, o) }

// UpdateCluster replaces a cluster; o.Meta.Version must be the stored version.
func (w *writeTx) UpdateCluster(o *berthv1.Cluster) error { return w.update(clusters, o) }

// DeleteCluster removes the cluster with that ID.
func (w *writeTx) DeleteCluster(id string) error { return w.remove(clusters, id) }
