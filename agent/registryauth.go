package agent

import (
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"berth/agent/image"
	pb "berth/proto/berth/v1"
)

// pullOptions turns a task's registry credentials into the options of its
// image pull. The password exists only in the task as the session
// delivered it and in the pull; it is not logged, reported or written.
// Credentials for another registry than the image's are refused rather
// than sent there.
func pullOptions(ref string, ra *pb.RegistryAuth) ([]image.PullOption, error) {
	if ra == nil {
		return nil, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	want := r.Context().RegistryStr()
	if reg, err := name.NewRegistry(ra.GetServer()); err != nil || reg.RegistryStr() != want {
		return nil, fmt.Errorf("the task's registry credentials are for %q, not for the image's registry %s; not sending them: update the service with --registry-auth", ra.GetServer(), want)
	}
	if ra.GetPassword() == "" {
		return nil, fmt.Errorf("the registry credentials of user %q for %s arrived without a password (the manager could not open them; see its log): update the service with --registry-auth", ra.GetUsername(), want)
	}
	return []image.PullOption{image.WithBasicAuth(ra.GetUsername(), ra.GetPassword())}, nil
}

// pullHint adds to a refused pull what the user can do about it.
func pullHint(err error, ra *pb.RegistryAuth) error {
	if !errors.Is(err, image.ErrUnauthorized) {
		return err
	}
	if ra == nil {
		return fmt.Errorf("%w (the service has no registry credentials: create or update it with --registry-auth after `docker login`)", err)
	}
	return fmt.Errorf("%w (the credentials of user %q were refused: update the service with --registry-auth)", err, ra.GetUsername())
}
