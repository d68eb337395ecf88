package controlapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/deploy"
	"berth/internal/ids"
	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func (s *Server) getService(tx store.ReadTx, ref string) (*pb.Service, error) {
	return resolve("service", ref, tx.GetService, tx.FindServices)
}

// checkServiceRefs checks what a spec refers to in the cluster: networks
// secrets and configs must exist (their IDs are filled in, and targets
// kept in their normal form: relative to /run/secrets for secrets,
// absolute for configs), published ports must be
// free. spec is changed in place.
func (s *Server) checkServiceRefs(tx store.ReadTx, serviceID string, spec *pb.ServiceSpec) error {
	for i, n := range spec.GetNetworks() {
		nw, err := resolve("network", n.GetTarget(), tx.GetNetwork, tx.FindNetworks)
		if err != nil {
			return invalid("invalid networks[%d]: network %q does not exist; create it with `berth network create %s`", i, n.GetTarget(), n.GetTarget())
		}
		n.Target = nw.GetId()
	}
	for i, ref := range spec.GetTask().GetContainer().GetSecrets() {
		sec, err := resolveRef("secret", i, ref.GetSecretName(), ref.GetSecretId(), tx.GetSecret, tx.FindSecrets)
		if err != nil {
			return err
		}
		ref.SecretId, ref.SecretName = sec.GetId(), sec.GetSpec().GetAnnotations().GetName()
		if ref.FileName, err = validate.SecretTarget(fmt.Sprintf("secrets[%d].target", i), ref); err != nil {
			return err
		}
	}
	if err := checkConfigRefs(tx, spec.GetTask().GetContainer()); err != nil {
		return err
	}
	if err := checkCapacity(tx, spec.GetTask().GetResources()); err != nil {
		return err
	}
	all, err := tx.FindServices(store.All)
	if err != nil {
		return err
	}
	return validate.PortConflict(serviceID, spec, all)
}

// CreateService validates a spec and stores a new service.
func (s *Server) CreateService(ctx context.Context, req *pb.CreateServiceRequest) (*pb.CreateServiceResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*pb.ServiceSpec)
	if err := refuseSealed(spec); err != nil {
		return nil, toStatus(err)
	}
	if err := validate.ServiceSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	if spec.GetMode() == pb.ServiceMode_SERVICE_MODE_REPLICATED && spec.Replicas == nil {
		spec.Replicas = proto.Int64(1)
	}
	if err := s.sealRegistryPassword(spec); err != nil {
		return nil, toStatus(err)
	}
	svc := &pb.Service{Id: ids.New(), Spec: spec, SpecVersion: 1}
	err := s.update(ctx, func(tx store.Tx) error {
		if err := s.checkServiceRefs(tx, svc.Id, spec); err != nil {
			return err
		}
		if err := tx.CreateService(svc); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { svc = tx.GetService(svc.GetId()) })
	s.cfg.Log.Info("service created", "service", svc.GetId(), "name", spec.GetAnnotations().GetName())
	return &pb.CreateServiceResponse{Service: publicService(svc)}, nil
}

// GetService finds a service by ID, name or ID prefix.
func (s *Server) GetService(ctx context.Context, req *pb.GetServiceRequest) (*pb.GetServiceResponse, error) {
	var svc *pb.Service
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		svc, err = s.getService(tx, req.GetServiceId())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetServiceResponse{Service: publicService(svc)}, nil
}

// ListServices lists services matching the filters, a page at a time,
// with their task counts when asked.
func (s *Server) ListServices(ctx context.Context, req *pb.ListServicesRequest) (*pb.ListServicesResponse, error) {
	if err := validate.Filters(req.GetFilters()); err != nil {
		return nil, toStatus(err)
	}
	if err := validate.ListModes(req.GetModes()); err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListServicesResponse{}
	err := s.view(ctx, func(tx store.ReadTx) error {
		all, err := tx.FindServices(store.All)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(all, func(svc *pb.Service) bool {
			return !matches(req.GetFilters(), svc.GetId(), svc.GetSpec().GetAnnotations()) ||
				len(req.GetModes()) > 0 && !slices.Contains(req.GetModes(), svc.GetSpec().GetMode())
		})
		var countErr error
		resp.Services, resp.NextPageToken = page(all, (*pb.Service).GetId, req.GetPageToken(), pageBudget, func(svc *pb.Service) *pb.Service {
			if req.GetStatus() && countErr == nil {
				svc, countErr = withStatus(tx, svc)
			}
			return publicService(svc)
		})
		return countErr
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// UpdateService replaces a service's spec (or rolls back to the previous
// one); service_version must be the version the caller read.
func (s *Server) UpdateService(ctx context.Context, req *pb.UpdateServiceRequest) (*pb.UpdateServiceResponse, error) {
	var out *pb.Service
	err := s.update(ctx, func(tx store.Tx) error {
		cur, err := s.getService(tx, req.GetServiceId())
		if err != nil {
			return err
		}
		if cur.GetMeta().GetVersion() != req.GetServiceVersion() {
			return store.ErrSequenceConflict
		}
		svc := proto.Clone(cur).(*pb.Service)
		var next *pb.ServiceSpec
		if req.GetRollback() {
			if svc.GetPreviousSpec() == nil {
				return precondition("service %s has no previous spec to roll back to", svc.GetSpec().GetAnnotations().GetName())
			}
			next = proto.Clone(svc.GetPreviousSpec()).(*pb.ServiceSpec)
		} else {
			next = proto.Clone(req.GetSpec()).(*pb.ServiceSpec)
			if err := refuseSealed(next); err != nil {
				return err
			}
			keepRegistryPassword(next, cur.GetSpec())
		}
		if err := validate.ServiceSpec(next); err != nil {
			return err
		}
		if err := s.sealRegistryPassword(next); err != nil {
			return err
		}
		if next.GetMode() != cur.GetSpec().GetMode() {
			return invalid("invalid mode: a service cannot change between replicated and global; remove it and create it again")
		}
		if next.GetAnnotations().GetName() != cur.GetSpec().GetAnnotations().GetName() {
			return invalid("invalid name: renaming a service is not supported")
		}
		if err := s.checkServiceRefs(tx, svc.GetId(), next); err != nil {
			return err
		}
		svc.PreviousSpec, svc.PreviousSpecVersion = cur.GetSpec(), cur.GetSpecVersion()
		svc.Spec, svc.SpecVersion = next, cur.GetSpecVersion()+1
		svc.UpdateStatus = nextUpdateStatus(cur, next, req.GetRollback(), s.cfg.Now())
		if err := tx.UpdateService(svc); err != nil {
			return err
		}
		out = svc
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { out = tx.GetService(out.GetId()) })
	return &pb.UpdateServiceResponse{Service: publicService(out)}, nil
}

// nextUpdateStatus is a service's update status after a spec change: a
// rollback starts one; a change of what tasks run (deploy.TasksChange:
// their spec or networks) starts an update, which
// supersedes one in progress and resumes a paused one (Docker Swarm's
// rule); a change of replicas alone keeps the status as it was.
func nextUpdateStatus(cur *pb.Service, next *pb.ServiceSpec, rollback bool, now time.Time) *pb.UpdateStatus {
	st := cur.GetUpdateStatus()
	switch {
	case rollback:
		return &pb.UpdateStatus{State: pb.UpdateStatus_STATE_ROLLBACK_STARTED, StartedAt: timestamppb.New(now), Message: "manually requested rollback"}
	case deploy.TasksChange(cur.GetSpec(), next),
		st.GetState() == pb.UpdateStatus_STATE_PAUSED, st.GetState() == pb.UpdateStatus_STATE_ROLLBACK_PAUSED:
		return &pb.UpdateStatus{State: pb.UpdateStatus_STATE_UPDATING, StartedAt: timestamppb.New(now), Message: "update in progress"}
	}
	return st
}

// RemoveService deletes a service; the orchestrator shuts its tasks down.
func (s *Server) RemoveService(ctx context.Context, req *pb.RemoveServiceRequest) (*pb.RemoveServiceResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		svc, err := s.getService(tx, req.GetServiceId())
		if err != nil {
			return err
		}
		return tx.DeleteService(svc.GetId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveServiceResponse{}, nil
}

// matches applies list filters to an object's ID and annotations.
func matches(f *pb.ListFilters, id string, a *pb.Annotations) bool {
	if f == nil {
		return true
	}
	name := a.GetName()
	if len(f.GetNames()) > 0 && !anyOf(f.GetNames(), func(n string) bool { return strings.EqualFold(n, name) }) {
		return false
	}
	if len(f.GetNamePrefixes()) > 0 && !anyOf(f.GetNamePrefixes(), func(p string) bool { return strings.HasPrefix(name, p) }) {
		return false
	}
	if len(f.GetIdPrefixes()) > 0 && !anyOf(f.GetIdPrefixes(), func(p string) bool { return strings.HasPrefix(id, p) }) {
		return false
	}
	for k, v := range f.GetLabels() {
		if got, ok := a.GetLabels()[k]; !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

func anyOf(list []string, ok func(string) bool) bool {
	for _, s := range list {
		if ok(s) {
			return true
		}
	}
	return false
}
