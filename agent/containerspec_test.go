package agent

import (
	"maps"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"

	"berth/agent/image"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

func TestRuntimeSpecFollowsDockerRules(t *testing.T) {
	img := image.RunConfig{Entrypoint: []string{"/app"}, Cmd: []string{"--port", "80"}, Env: []string{"PATH=/bin", "A=img"}, WorkingDir: "/srv", User: "app", StopSignal: "SIGINT"}
	for _, tc := range []struct {
		name string
		c    *pb.ContainerSpec
		want string
	}{
		{"image defaults", &pb.ContainerSpec{}, "/app --port 80"},
		{"args replace cmd", &pb.ContainerSpec{Args: []string{"-v"}}, "/app -v"},
		{"command replaces entrypoint and cmd", &pb.ContainerSpec{Command: []string{"sh", "-c"}}, "sh -c"},
		{"command and args", &pb.ContainerSpec{Command: []string{"echo"}, Args: []string{"hi"}}, "echo hi"},
	} {
		s, err := RuntimeSpec("c1", "/rootfs", img, tc.c, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.Join(s.Args, " "); got != tc.want {
			t.Errorf("%s: args %q, want %q", tc.name, got, tc.want)
		}
	}
	s, err := RuntimeSpec("0123456789abcdef", "/rootfs", img, &pb.ContainerSpec{
		Env: []string{"A=spec", "B=2"}, StopGracePeriod: durationpb.New(3 * time.Second),
		Mounts: []*pb.Mount{{Type: pb.Mount_TYPE_TMPFS, Target: "/cache", TmpfsSizeBytes: 1 << 20}},
	}, &pb.ResourceSet{MemoryBytes: 64 << 20, Pids: 50})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Env, ",") != "PATH=/bin,A=spec,B=2" || s.Cwd != "/srv" || s.User != "app" || s.Hostname != "0123456789ab" {
		t.Errorf("env/cwd/user/hostname: %q %q %q %q", s.Env, s.Cwd, s.User, s.Hostname)
	}
	if s.StopSignal != unix.SIGINT || s.StopGrace != 3*time.Second || s.Resources.MemoryBytes != 64<<20 || s.Resources.PidsLimit != 50 {
		t.Errorf("stop/resources: %v %v %+v", s.StopSignal, s.StopGrace, s.Resources)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Type != runtime.MountTmpfs || s.Mounts[0].Options[0] != "size=1048576" {
		t.Errorf("mounts: %+v", s.Mounts)
	}
	if _, err := RuntimeSpec("c1", "/rootfs", image.RunConfig{}, &pb.ContainerSpec{}, nil); err == nil {
		t.Error("a spec with nothing to run was accepted")
	}
	if _, err := RuntimeSpec("c1", "/rootfs", img, &pb.ContainerSpec{StopSignal: "SIGNOPE"}, nil); err == nil {
		t.Error("unknown stop signal accepted")
	}
}

func TestRuntimeSpecSeccomp(t *testing.T) {
	img := image.RunConfig{Cmd: []string{"sh"}}
	profile := `{"defaultAction": "SCMP_ACT_ALLOW"}`
	for _, tc := range []struct {
		opts []string
		want string
	}{
		{nil, ""},
		{[]string{"seccomp=builtin"}, ""},
		{[]string{"seccomp=unconfined"}, "unconfined"},
		{[]string{"no-new-privileges", "seccomp=" + profile}, profile},
	} {
		s, err := RuntimeSpec("c1", "/rootfs", img, &pb.ContainerSpec{SecurityOpts: tc.opts}, nil)
		if err != nil || s.Seccomp != tc.want {
			t.Errorf("%q: seccomp %q, %v; want %q", tc.opts, s.Seccomp, err, tc.want)
		}
	}
	_, err := RuntimeSpec("c1", "/rootfs", img, &pb.ContainerSpec{SecurityOpts: []string{"apparmor=unconfined"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("apparmor option: %v, want refused", err)
	}
}

// TestContainerLabels: a container carries its image's labels under the
// spec's (`--container-label`), and a task's container berth's own on
// top, as Swarm's com.docker.swarm.* ones.
func TestContainerLabels(t *testing.T) {
	img := image.RunConfig{Cmd: []string{"/app"}, Labels: map[string]string{"from": "image", "keep": "img"}}
	s, err := RuntimeSpec("c1", "/rootfs", img, &pb.ContainerSpec{Labels: map[string]string{"from": "spec", LabelTaskID: "forged"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels["from"] != "spec" || s.Labels["keep"] != "img" {
		t.Errorf("labels %v: want the spec's over the image's", s.Labels)
	}
	got := withTaskLabels(s.Labels, &pb.Task{Id: "t1", ServiceId: "s1", Slot: 2, NodeId: "n1"})
	want := map[string]string{"from": "spec", "keep": "img", LabelTaskID: "t1", LabelServiceID: "s1", LabelTaskSlot: "2", LabelNodeID: "n1"}
	if !maps.Equal(got, want) {
		t.Errorf("task container labels %v, want %v", got, want)
	}
	if _, err := RuntimeSpec("c1", "/rootfs", img, &pb.ContainerSpec{Labels: map[string]string{"": "v"}}, nil); err == nil {
		t.Error("a label without a key was accepted")
	}
}
