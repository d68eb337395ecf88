package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// nameTries bounds how many generated names create tries.
const nameTries = 5

// createService creates spec. A service created without --name (named
// false) is called after its image; when a service has that name already
// it gets the image's name with a random suffix ("web-k3x9qa"), said on
// stderr, instead of failing on a name the user never gave.
func createService(ctx context.Context, c pb.ControlClient, spec *pb.ServiceSpec, named bool, stderr io.Writer) (*pb.Service, error) {
	base := spec.GetAnnotations().GetName()
	for try := 0; ; try++ {
		resp, err := c.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec})
		if err == nil {
			if try > 0 {
				fmt.Fprintf(stderr, "a service is named %s already: this one is %s (name it with --name)\n", base, spec.GetAnnotations().GetName())
			}
			return resp.GetService(), nil
		}
		if named || status.Code(err) != codes.AlreadyExists || try == nameTries {
			return nil, err
		}
		spec.Annotations.Name = base + "-" + suffix()
	}
}

// suffix is six random lowercase letters and digits.
func suffix() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
