package controlapi

import (
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// withStatus returns svc with its task counts filled in, as Docker's
// ServiceList with status=true: running is tasks running and desired
// running; desired is the replica count, or for a global service its tasks
// desired running. It reads the service's tasks through the store's
// service index, so its cost is the service's own tasks, never the
// cluster's.
func withStatus(tx store.ReadTx, svc *pb.Service) (*pb.Service, error) {
	tasks, err := tx.FindTasks(store.ByServiceID(svc.GetId()))
	if err != nil {
		return nil, err
	}
	var st pb.ServiceStatus
	for _, t := range tasks {
		if t.GetDesiredState() != pb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		st.DesiredTasks++
		if t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			st.RunningTasks++
		}
	}
	if svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_REPLICATED {
		st.DesiredTasks = uint64(max(0, svc.GetSpec().GetReplicas()))
	}
	out := proto.Clone(svc).(*pb.Service)
	out.Status = &st
	return out, nil
}
