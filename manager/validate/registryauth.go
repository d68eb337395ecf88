package validate

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	pb "berth/proto/berth/v1"
)

// MaxRegistryPassword bounds a registry password or token; cloud registries'
// tokens and JSON keys stay well below it.
const MaxRegistryPassword = 64 << 10

// registryAuth checks pull credentials against the image they are for: they
// must name the image's registry, so a spec cannot send a password for one
// registry to another.
func registryAuth(image string, ref name.Reference, ra *pb.RegistryAuth) error {
	if ra == nil {
		return nil
	}
	want := ref.Context().RegistryStr()
	if ra.GetServer() == "" {
		return fieldErr("registry_auth.server", "empty", "give the image's registry, %s (berth service create --registry-auth fills it in)", want)
	}
	reg, err := name.NewRegistry(ra.GetServer())
	if err != nil || reg.RegistryStr() != want {
		return fieldErr("registry_auth.server", fmt.Sprintf("the credentials are for registry %q but image %q comes from %q", ra.GetServer(), image, want),
			"pass --registry-auth again for %s, or drop the credentials with --registry-auth=false", want)
	}
	if u := ra.GetUsername(); u == "" {
		return fieldErr("registry_auth.username", "empty", "give the registry user (--registry-user, or --registry-auth with `docker login %s` done first)", want)
	} else if strings.ContainsAny(u, ":\n\r") {
		return fieldErr("registry_auth.username", "contains ':' or a line break, which basic auth cannot carry", "use the user name as `docker login %s` takes it", want)
	}
	if ra.GetPassword() == "" && len(ra.GetSealedPassword()) == 0 {
		return fieldErr("registry_auth.password", "empty", "give the password with --registry-password-stdin, or use --registry-auth after `docker login %s`", want)
	}
	if len(ra.GetPassword()) > MaxRegistryPassword {
		return fieldErr("registry_auth.password", fmt.Sprintf("%d bytes long", len(ra.GetPassword())), "use a password or token of at most %d bytes", MaxRegistryPassword)
	}
	return nil
}
