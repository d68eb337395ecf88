package main

import (
	"strings"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestCreateBuildsSpec(t *testing.T) {
	cmd := newServiceCreateCmd(&globalOpts{})
	args := []string{"--name", "web", "--replicas", "3", "-e", "A=1", "-p", "8080:80", "--limit-memory", "64M",
		"--constraint", "node.role==worker", "--mount", "type=tmpfs,target=/cache", "--restart-condition", "on-failure",
		"--update-failure-action", "rollback", "reg/app:v1", "serve", "--port", "80"}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	var l serviceLists
	l.name, _ = cmd.Flags().GetString("name")
	l.mode, _ = cmd.Flags().GetString("mode")
	l.env, _ = cmd.Flags().GetStringArray("env")
	l.publish, _ = cmd.Flags().GetStringArray("publish")
	l.constraints, _ = cmd.Flags().GetStringArray("constraint")
	l.mounts, _ = cmd.Flags().GetStringArray("mount")
	spec, err := l.spec(cmd.Flags().Args())
	if err != nil {
		t.Fatal(err)
	}
	var f serviceFlags
	f.replicas, _ = cmd.Flags().GetInt64("replicas")
	f.limitMem, _ = cmd.Flags().GetString("limit-memory")
	f.restartCond, _ = cmd.Flags().GetString("restart-condition")
	f.updFailure, _ = cmd.Flags().GetString("update-failure-action")
	f.updOrder, f.rbFailure, f.rbOrder, f.endpointMode = "stop-first", "pause", "stop-first", "vip"
	if err := f.apply(cmd.Flags(), spec, true); err != nil {
		t.Fatal(err)
	}
	c := spec.GetTask().GetContainer()
	switch {
	case spec.GetAnnotations().GetName() != "web", spec.GetReplicas() != 3:
		t.Errorf("name/replicas: %v", spec)
	case c.GetImage() != "reg/app:v1" || strings.Join(c.GetArgs(), " ") != "serve --port 80":
		t.Errorf("image/args: %v %v", c.GetImage(), c.GetArgs())
	case spec.GetTask().GetResources().GetLimits().GetMemoryBytes() != 64<<20:
		t.Errorf("memory: %v", spec.GetTask().GetResources())
	case spec.GetTask().GetRestart().GetCondition() != pb.RestartPolicy_CONDITION_ON_FAILURE:
		t.Errorf("restart: %v", spec.GetTask().GetRestart())
	case spec.GetUpdate().GetFailureAction() != pb.UpdateConfig_FAILURE_ACTION_ROLLBACK:
		t.Errorf("update: %v", spec.GetUpdate())
	case len(c.GetMounts()) != 1 || c.GetMounts()[0].GetType() != pb.Mount_TYPE_TMPFS:
		t.Errorf("mounts: %v", c.GetMounts())
	case spec.GetEndpoint().GetPorts()[0].GetPublishedPort() != 8080:
		t.Errorf("ports: %v", spec.GetEndpoint())
	}
}

func TestDefaultName(t *testing.T) {
	for in, want := range map[string]string{"busybox": "busybox", "127.0.0.1:5000/team/app:v1": "app", "app@sha256:abc": "app"} {
		if got := defaultName(in); got != want {
			t.Errorf("defaultName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlacementStrategyFlag(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want pb.Placement_Strategy
		err  string
	}{
		{"binpack", pb.Placement_STRATEGY_BINPACK, ""},
		{"spread", pb.Placement_STRATEGY_SPREAD, ""},
		{"densest", 0, `--placement-strategy "densest": use one of`},
	} {
		cmd := newServiceCreateCmd(&globalOpts{})
		if err := cmd.ParseFlags([]string{"--placement-strategy", tc.flag, "reg/app:v1"}); err != nil {
			t.Fatal(err)
		}
		f := serviceFlags{strategy: tc.flag}
		spec := &pb.ServiceSpec{Task: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "reg/app:v1"}}}
		err := f.apply(cmd.Flags(), spec, false)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--placement-strategy %s: err %v, want %q", tc.flag, err, tc.err)
			}
			continue
		}
		if err != nil || spec.GetTask().GetPlacement().GetStrategy() != tc.want {
			t.Errorf("--placement-strategy %s: strategy %v, err %v; want %v", tc.flag, spec.GetTask().GetPlacement().GetStrategy(), err, tc.want)
		}
	}
}
