package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

func newSecretCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage secrets"}
	cmd.AddCommand(newSecretCreateCmd(g), newSecretLsCmd(g), newSecretInspectCmd(g), newSecretRmCmd(g))
	return cmd
}

func newSecretCreateCmd(g *globalOpts) *cobra.Command {
	long := `Create a secret from the content of FILE, or of stdin with "-".

The managers keep it encrypted with the cluster key and send it only to the
nodes running tasks of services that name it (service create --secret NAME),
where it appears on a tmpfs at /run/secrets/NAME. No command shows the value
again: to rotate it, create a new secret and update the services to it.`
	return newFileCreateCmd(g, "secret", long, func(ctx context.Context, c pb.ControlClient, a *pb.Annotations, data []byte) (string, error) {
		r, err := c.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{Annotations: a, Data: data}})
		return r.GetSecret().GetId(), err
	})
}

func newSecretLsCmd(g *globalOpts) *cobra.Command {
	return newFileLsCmd(g, "List secrets (never their values)", func(ctx context.Context, c pb.ControlClient, f *pb.ListFilters) ([]fileObject, error) {
		secs, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Secret, string, error) {
			r, err := c.ListSecrets(ctx, &pb.ListSecretsRequest{Filters: f, PageToken: token})
			return r.GetSecrets(), r.GetNextPageToken(), err
		})
		var objs []fileObject
		for _, s := range secs {
			objs = append(objs, fileObject{s.GetId(), s.GetMeta(), s.GetSpec().GetAnnotations(), s})
		}
		return objs, err
	})
}

func newSecretInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect SECRET [SECRET...]", Short: "Show secrets in detail (JSON, never their values)", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var out []*pb.Secret
			for _, a := range args {
				r, err := c.GetSecret(ctx, &pb.GetSecretRequest{SecretId: a})
				if err != nil {
					return err
				}
				out = append(out, r.GetSecret())
			}
			return printObjects(cmd.OutOrStdout(), *format, out)
		})
	}
	return cmd
}

func newSecretRmCmd(g *globalOpts) *cobra.Command {
	return newFileRmCmd(g, "secret", func(ctx context.Context, c pb.ControlClient, id string) error {
		_, err := c.RemoveSecret(ctx, &pb.RemoveSecretRequest{SecretId: id})
		return err
	})
}

// secretFlagHelp describes --secret and --secret-add.
const secretFlagHelp = "expose a secret: NAME (at /run/secrets/NAME, mode 0444) or source=NAME,target=FILE,uid=U,gid=G,mode=0400 (repeatable)"

// secretRefs reads --secret flags into references.
func secretRefs(flag string, vals []string) ([]*pb.SecretReference, error) {
	return parseRefs(flag, vals, flagparse.Secret)
}

// editSecrets applies update's --secret-rm (by secret name or ID, or by
// target) and then --secret-add; an added secret replaces one with the
// same target, as Docker's CLI does.
func editSecrets(c *pb.ContainerSpec, add, rm []string) error {
	adds, err := secretRefs("secret-add", add)
	if err != nil {
		return err
	}
	// Targets are stored relative to /run/secrets.
	target := func(t string) string { return strings.TrimLeft(strings.TrimPrefix(t, "/run/secrets/"), "/") }
	keys := func(r *pb.SecretReference) refKeys {
		return refKeys{r.GetSecretName(), r.GetSecretId(), r.GetFileName()}
	}
	c.Secrets = editRefs(c.GetSecrets(), adds, rm, keys, target)
	return nil
}
