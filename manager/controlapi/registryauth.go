package controlapi

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
)

// Registry credentials (ContainerSpec.registry_auth) enter as a clear
// password, are stored sealed with the cluster key, and leave the Control
// API as server and username only. The dispatcher opens them for the agent
// of the node that runs the task.

// refuseSealed rejects sealed bytes from a client: only managers seal, and
// clients never see sealed bytes to send back.
func refuseSealed(spec *pb.ServiceSpec) error {
	if len(spec.GetTask().GetContainer().GetRegistryAuth().GetSealedPassword()) > 0 {
		return &validate.FieldError{Field: "registry_auth.sealed_password", Problem: "is set by managers only",
			Fix: "send the password in registry_auth.password (berth service create --registry-auth)"}
	}
	return nil
}

// keepRegistryPassword lets an update that leaves the credentials alone
// keep them: clients read them back without a password, so a spec whose
// credentials name the same server and user with no new password takes
// the stored sealed one.
func keepRegistryPassword(next, cur *pb.ServiceSpec) {
	n, c := next.GetTask().GetContainer().GetRegistryAuth(), cur.GetTask().GetContainer().GetRegistryAuth()
	if n == nil || c == nil || n.GetPassword() != "" {
		return
	}
	if n.GetServer() == c.GetServer() && n.GetUsername() == c.GetUsername() {
		n.SealedPassword = c.GetSealedPassword()
	}
}

// sealRegistryPassword replaces a clear registry password in spec with its
// sealed form, so the replicated state never holds it in clear.
func (s *Server) sealRegistryPassword(spec *pb.ServiceSpec) error {
	ra := spec.GetTask().GetContainer().GetRegistryAuth()
	if ra.GetPassword() == "" {
		return nil
	}
	if s.cfg.SealSecret == nil {
		return errors.New("controlapi: Config.SealSecret is nil; registry credentials cannot be stored")
	}
	sealed, err := s.cfg.SealSecret([]byte(ra.GetPassword()))
	if err != nil {
		return err
	}
	ra.Password, ra.SealedPassword = "", sealed
	return nil
}

// hasRegistryPassword says whether c holds a password in any form.
func hasRegistryPassword(c *pb.ContainerSpec) bool {
	ra := c.GetRegistryAuth()
	return ra.GetPassword() != "" || len(ra.GetSealedPassword()) > 0
}

// stripRegistryPassword clears the password, clear or sealed, in c.
func stripRegistryPassword(c *pb.ContainerSpec) {
	if ra := c.GetRegistryAuth(); ra != nil {
		ra.Password, ra.SealedPassword = "", nil
	}
}

// publicService is a service as clients see it: registry credentials show
// server and username only. Objects from the store are not changed.
func publicService(svc *pb.Service) *pb.Service {
	if !hasRegistryPassword(svc.GetSpec().GetTask().GetContainer()) &&
		!hasRegistryPassword(svc.GetPreviousSpec().GetTask().GetContainer()) {
		return svc
	}
	svc = proto.Clone(svc).(*pb.Service)
	stripRegistryPassword(svc.GetSpec().GetTask().GetContainer())
	stripRegistryPassword(svc.GetPreviousSpec().GetTask().GetContainer())
	return svc
}

// publicTask is a task as clients see it; see publicService.
func publicTask(t *pb.Task) *pb.Task {
	if !hasRegistryPassword(t.GetSpec().GetContainer()) {
		return t
	}
	t = proto.Clone(t).(*pb.Task)
	stripRegistryPassword(t.GetSpec().GetContainer())
	return t
}
