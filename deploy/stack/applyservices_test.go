package stack

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// TestDesiredSpec: references become IDs where the objects exist; over a
// stored service, the file's silence on replicas keeps the stored count,
// and the forced-update counter and registry credentials are the stored
// ones; a file's replicas win.
func TestDesiredSpec(t *testing.T) {
	spec := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "s_api"},
		Task: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app", Secrets: []*pb.SecretReference{
			{SecretName: "s_pw", FileName: "pw"}, {SecretName: "s_new", FileName: "new"}}}},
		Networks: []*pb.NetworkAttachment{{Target: "s_front"}, {Target: "s_later"}},
	}
	r := &ids{networks: map[string]string{"s_front": "n1"}, secrets: map[string]string{"s_pw": "x1"}}
	got := desired(spec, nil, r)
	if got.GetNetworks()[0].GetTarget() != "n1" || got.GetNetworks()[1].GetTarget() != "s_later" ||
		got.GetTask().GetContainer().GetSecrets()[0].GetSecretId() != "x1" || got.GetTask().GetContainer().GetSecrets()[1].GetSecretId() != "" {
		t.Errorf("references: %v", got)
	}
	if got.Replicas != nil || spec.GetNetworks()[0].GetTarget() != "s_front" {
		t.Errorf("a new service: replicas %v; the stack's spec must stay as read: %v", got.Replicas, spec)
	}
	cur := &pb.Service{Spec: &pb.ServiceSpec{Replicas: proto.Int64(7), Task: &pb.TaskSpec{ForceUpdate: 3,
		Container: &pb.ContainerSpec{RegistryAuth: &pb.RegistryAuth{Server: "reg", Username: "u"}}}}}
	got = desired(spec, cur, r)
	if got.GetReplicas() != 7 || got.GetTask().GetForceUpdate() != 3 || got.GetTask().GetContainer().GetRegistryAuth().GetUsername() != "u" {
		t.Errorf("over a stored service: %v", got)
	}
	spec.Replicas = proto.Int64(2)
	if got = desired(spec, cur, r); got.GetReplicas() != 2 {
		t.Errorf("the file's replicas: %d", got.GetReplicas())
	}
}
