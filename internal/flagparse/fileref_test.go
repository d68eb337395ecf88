package flagparse

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *pb.SecretReference
		bad  string
	}{
		{in: "db", want: &pb.SecretReference{SecretName: "db", FileName: "db", Mode: 0o444}},
		{in: "source=db", want: &pb.SecretReference{SecretName: "db", FileName: "db", Mode: 0o444}},
		{in: "src=db,dst=/run/secrets/pw,uid=1000,gid=1001,mode=0400",
			want: &pb.SecretReference{SecretName: "db", FileName: "/run/secrets/pw", Uid: 1000, Gid: 1001, Mode: 0o400}},
		{in: "source=db,mode=0", want: &pb.SecretReference{SecretName: "db", FileName: "db"}},
		{in: "", bad: "no secret named"},
		{in: "target=x", bad: "no source=NAME"},
		{in: "source=db,mode=0999", bad: "mode=0999"},
		{in: "source=db,mode=01777", bad: "beyond 0777"},
		{in: "source=db,uid=-1", bad: "uid=-1"},
		{in: "source=db,readonly", bad: `"readonly" is not KEY=VALUE`},
		{in: "source=db,colour=red", bad: `unknown key "colour"`},
	} {
		got, err := Secret("secret", tc.in)
		switch {
		case tc.bad == "" && (err != nil || !proto.Equal(got, tc.want)):
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad) || !strings.Contains(err.Error(), "--secret")):
			t.Errorf("%q: %v, %v; want an error naming --secret and %s", tc.in, got, err, tc.bad)
		}
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *pb.ConfigReference
		bad  string
	}{
		{in: "app", want: &pb.ConfigReference{ConfigName: "app", FileName: "/app", Mode: 0o444}},
		{in: "source=app,target=/etc/app.conf,uid=1,gid=2,mode=0440",
			want: &pb.ConfigReference{ConfigName: "app", FileName: "/etc/app.conf", Uid: 1, Gid: 2, Mode: 0o440}},
		{in: "", bad: "no config named"},
		{in: "target=/x", bad: "no source=NAME"},
		{in: "source=app,mode=8", bad: "mode=8"},
	} {
		got, err := Config("config", tc.in)
		switch {
		case tc.bad == "" && (err != nil || !proto.Equal(got, tc.want)):
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad) || !strings.Contains(err.Error(), "--config")):
			t.Errorf("%q: %v, %v; want an error naming --config and %s", tc.in, got, err, tc.bad)
		}
	}
}
