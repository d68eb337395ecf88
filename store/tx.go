package store

import (
	berthv1 "berth/proto/berth/v1"
)

// ReadTx reads one consistent view of the store. Returned objects are the
// stored ones: do not change them; proto.Clone first.
type ReadTx interface {
	// Index is the store index this view reflects: the index of the last
	// change applied. Watch from it to follow the view without a gap.
	Index() uint64

	GetNode(id string) *berthv1.Node
	FindNodes(by By) ([]*berthv1.Node, error)
	GetService(id string) *berthv1.Service
	FindServices(by By) ([]*berthv1.Service, error)
	GetTask(id string) *berthv1.Task
	FindTasks(by By) ([]*berthv1.Task, error)
	GetNetwork(id string) *berthv1.Network
	FindNetworks(by By) ([]*berthv1.Network, error)
	GetSecret(id string) *berthv1.Secret
	FindSecrets(by By) ([]*berthv1.Secret, error)
	GetConfig(id string) *berthv1.Config
	FindConfigs(by By) ([]*berthv1.Config, error)
	GetCluster(id string) *berthv1.Cluster
	FindClusters(by By) ([]*berthv1.Cluster, error)
	// GetRemovedNode says whether (and when) node id was removed; nil
	// when it was not.
	GetRemovedNode(id string) *berthv1.RemovedNode
	FindRemovedNodes(by By) ([]*berthv1.RemovedNode, error)
}

// Tx reads and writes within one atomic change. Reads see the writes made
// earlier in the same Tx. Create fails with ErrExist or ErrNameConflict
// (CreateNode also with ErrNodeRemoved);
// Update with ErrNotFound, ErrNameConflict or ErrSequenceConflict (the
// object's meta.version must be the stored one); Delete with ErrNotFound.
// The store keeps a clone of what is written.
type Tx interface {
	ReadTx

	CreateNode(n *berthv1.Node) error
	UpdateNode(n *berthv1.Node) error
	DeleteNode(id string) error
	CreateService(s *berthv1.Service) error
	UpdateService(s *berthv1.Service) error
	DeleteService(id string) error
	CreateTask(t *berthv1.Task) error
	UpdateTask(t *berthv1.Task) error
	DeleteTask(id string) error
	CreateNetwork(n *berthv1.Network) error
	UpdateNetwork(n *berthv1.Network) error
	DeleteNetwork(id string) error
	CreateSecret(s *berthv1.Secret) error
	UpdateSecret(s *berthv1.Secret) error
	DeleteSecret(id string) error
	CreateConfig(c *berthv1.Config) error
	DeleteConfig(id string) error
	CreateCluster(c *berthv1.Cluster) error
	UpdateCluster(c *berthv1.Cluster) error
	DeleteCluster(id string) error
}

// readTx is a ReadTx over a reader: the memdb state, or a writer's staged
// changes over it.
type readTx struct {
	r reader
}

func (r *readTx) Index() uint64 { return r.r.index() }

func get[T object](r reader, t *table, id string) T {
	var zero T
	o := r.lookup(t, id)
	if o == nil {
		return zero
	}
	return o.(T)
}

func find[T object](r reader, t *table, by By) ([]T, error) {
	keep, _ := by.(interface{ keep(object) bool }) // a selector no index serves
	var out []T
	err := r.each(t, by, func(o object) {
		if keep == nil || keep.keep(o) {
			out = append(out, o.(T))
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetNode returns the node with that ID, or nil.
func (r *readTx) GetNode(id string) *berthv1.Node { return get[*berthv1.Node](r.r, nodes, id) }

// FindNodes returns the nodes by selects.
func (r *readTx) FindNodes(by By) ([]*berthv1.Node, error) {
	return find[*berthv1.Node](r.r, nodes, by)
}

// GetService returns the service with that ID, or nil.
func (r *readTx) GetService(id string) *berthv1.Service {
	return get[*berthv1.Service](r.r, services, id)
}

// FindServices returns the services by selects.
func (r *readTx) FindServices(by By) ([]*berthv1.Service, error) {
	return find[*berthv1.Service](r.r, services, by)
}

// GetTask returns the task with that ID, or nil.
func (r *readTx) GetTask(id string) *berthv1.Task { return get[*berthv1.Task](r.r, tasks, id) }

// FindTasks returns the tasks by selects.
func (r *readTx) FindTasks(by By) ([]*berthv1.Task, error) {
	return find[*berthv1.Task](r.r, tasks, by)
}

// GetNetwork returns the network with that ID, or nil.
func (r *readTx) GetNetwork(id string) *berthv1.Network {
	return get[*berthv1.Network](r.r, networks, id)
}

// FindNetworks returns the networks by selects.
func (r *readTx) FindNetworks(by By) ([]*berthv1.Network, error) {
	return find[*berthv1.Network](r.r, networks, by)
}

// GetSecret returns the secret with that ID, or nil.
func (r *readTx) GetSecret(id string) *berthv1.Secret {
	return get[*berthv1.Secret](r.r, secrets, id)
}

// FindSecrets returns the secrets by selects.
func (r *readTx) FindSecrets(by By) ([]*berthv1.Secret, error) {
	return find[*berthv1.Secret](r.r, secrets, by)
}

// GetConfig returns the config with that ID, or nil.
func (r *readTx) GetConfig(id string) *berthv1.Config {
	return get[*berthv1.Config](r.r, configs, id)
}

// FindConfigs returns the configs by selects.
func (r *readTx) FindConfigs(by By) ([]*berthv1.Config, error) {
	return find[*berthv1.Config](r.r, configs, by)
}

// GetCluster returns the cluster object with that ID, or nil.
func (r *readTx) GetCluster(id string) *berthv1.Cluster {
	return get[*berthv1.Cluster](r.r, clusters, id)
}

// FindClusters returns the cluster objects by selects.
func (r *readTx) FindClusters(by By) ([]*berthv1.Cluster, error) {
	return find[*berthv1.Cluster](r.r, clusters, by)
}

// GetRemovedNode returns the record of node id's removal, or nil.
func (r *readTx) GetRemovedNode(id string) *berthv1.RemovedNode {
	return get[*berthv1.RemovedNode](r.r, removedNodes, id)
}

// FindRemovedNodes returns the records of removed nodes by selects.
func (r *readTx) FindRemovedNodes(by By) ([]*berthv1.RemovedNode, error) {
	return find[*berthv1.RemovedNode](r.r, removedNodes, by)
}
