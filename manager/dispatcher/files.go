package dispatcher

import (
	"cmp"
	"maps"
	"slices"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Secrets and configs reach a node the same way: the data of each one a
// task of the node names, before the task; removed when no task names it.
// A fileKind tells the assignment set how to do that for one of them.
type fileKind struct {
	noun string
	// ids lists the objects of this kind a container names.
	ids func(*pb.ContainerSpec) []string
	// data reads object id's data, opening it with open when sealed;
	// found is false when it does not exist.
	data func(tx store.ReadTx, open func([]byte) ([]byte, error), id string) (data []byte, found bool, err error)
	// send and drop are the changes giving an agent the data, and
	// telling it to forget it.
	send func(id string, data []byte) *pb.AssignmentChange
	drop func(id string) *pb.AssignmentChange
}

// fileKey is one object's data held by an agent.
type fileKey struct{ noun, id string }

var fileKinds = []fileKind{
	{
		noun: "secret",
		ids: func(c *pb.ContainerSpec) (ids []string) {
			for _, r := range c.GetSecrets() {
				ids = append(ids, r.GetSecretId())
			}
			return ids
		},
		data: func(tx store.ReadTx, open func([]byte) ([]byte, error), id string) ([]byte, bool, error) {
			sec := tx.GetSecret(id)
			if sec == nil {
				return nil, false, nil
			}
			d, err := open(sec.GetSpec().GetData())
			return d, true, err
		},
		send: func(id string, d []byte) *pb.AssignmentChange {
			return &pb.AssignmentChange{Item: &pb.AssignmentChange_SecretData{SecretData: &pb.SecretData{SecretId: id, Data: d}}}
		},
		drop: func(id string) *pb.AssignmentChange {
			return &pb.AssignmentChange{Action: pb.AssignmentChange_ACTION_REMOVE, Item: &pb.AssignmentChange_Secret{Secret: &pb.Secret{Id: id}}}
		},
	},
	{
		noun: "config",
		ids: func(c *pb.ContainerSpec) (ids []string) {
			for _, r := range c.GetConfigs() {
				ids = append(ids, r.GetConfigId())
			}
			return ids
		},
		data: func(tx store.ReadTx, _ func([]byte) ([]byte, error), id string) ([]byte, bool, error) {
			cfg := tx.GetConfig(id)
			return cfg.GetSpec().GetData(), cfg != nil, nil
		},
		send: func(id string, d []byte) *pb.AssignmentChange {
			return &pb.AssignmentChange{Item: &pb.AssignmentChange_ConfigData{ConfigData: &pb.ConfigData{ConfigId: id, Data: d}}}
		},
		drop: func(id string) *pb.AssignmentChange {
			return &pb.AssignmentChange{Action: pb.AssignmentChange_ACTION_REMOVE, Item: &pb.AssignmentChange_Config{Config: &pb.Config{Id: id}}}
		},
	},
}

// fileChanges sends the data of the secrets and configs the tasks name
// that the agent lacks, and removes those no task names.
func (a *assignSet) fileChanges(tx store.ReadTx) []*pb.AssignmentChange {
	var out []*pb.AssignmentChange
	for _, k := range fileKinds {
		out = append(out, a.kindChanges(tx, k)...)
	}
	return out
}

func (a *assignSet) kindChanges(tx store.ReadTx, k fileKind) []*pb.AssignmentChange {
	needed := map[string]bool{}
	for _, t := range a.tasks {
		for _, id := range k.ids(t.GetSpec().GetContainer()) {
			needed[id] = true
		}
	}
	var out []*pb.AssignmentChange
	for _, id := range slices.Sorted(maps.Keys(needed)) {
		key := fileKey{k.noun, id}
		if a.files[key] {
			continue
		}
		data, found, err := k.data(tx, a.open, id)
		switch {
		case !found:
			a.log.Warn("a task of the node needs a "+k.noun+" that does not exist", k.noun, id)
			continue
		case err != nil:
			a.log.Error("open sealed "+k.noun, k.noun, id, "err", err)
			continue
		}
		a.files[key] = true
		out = append(out, k.send(id, data))
	}
	for _, key := range slices.SortedFunc(maps.Keys(a.files), compareKeys) {
		if key.noun == k.noun && !needed[key.id] {
			delete(a.files, key)
			out = append(out, k.drop(key.id))
		}
	}
	return out
}

func compareKeys(x, y fileKey) int {
	return cmp.Or(cmp.Compare(x.noun, y.noun), cmp.Compare(x.id, y.id))
}
