package controlapi

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Secrets and configs are both objects a container takes as files: the
// code here serves both.

// secretIDs lists the secrets a container names.
func secretIDs(c *pb.ContainerSpec) []string {
	var ids []string
	for _, r := range c.GetSecrets() {
		ids = append(ids, r.GetSecretId())
	}
	return ids
}

// configIDs lists the configs a container names.
func configIDs(c *pb.ContainerSpec) []string {
	var ids []string
	for _, r := range c.GetConfigs() {
		ids = append(ids, r.GetConfigId())
	}
	return ids
}

// resolveRef finds the object reference i of a container names, by name
// (else ID); one that does not exist is the spec's error.
func resolveRef[T named](noun string, i int, name, id string, get func(string) T, find func(store.By) ([]T, error)) (T, error) {
	if name == "" {
		name = id
	}
	o, err := resolve(noun, name, get, find)
	if err != nil {
		return o, invalid("invalid %ss[%d]: %s %q does not exist; create it with `berth %s create %s FILE`", noun, i, noun, name, noun, name)
	}
	return o, nil
}

// removeUnused deletes object o of the given noun unless a service's
// container names it (ids lists the ones a container names); the error
// names every such service and how to free it.
func removeUnused(tx store.Tx, noun string, o named, name string, ids func(*pb.ContainerSpec) []string, del func(string) error) error {
	svcs, err := tx.FindServices(store.All)
	if err != nil {
		return err
	}
	var users []string
	for _, svc := range svcs {
		if slices.Contains(ids(svc.GetSpec().GetTask().GetContainer()), o.GetId()) {
			users = append(users, svc.GetSpec().GetAnnotations().GetName())
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		what := "service"
		if len(users) > 1 {
			what = "services"
		}
		return precondition("%s %s is in use by %s %s: remove them or run `berth service update --%s-rm %s SERVICE` first",
			noun, name, what, strings.Join(users, ", "), noun, name)
	}
	return del(o.GetId())
}

// fileObject is a secret or a config as the code shared by both needs it.
type fileObject interface {
	proto.Message
	GetId() string
}

// listFiles reads one page of the secrets or configs find returns that
// match filters, each as show makes it (a secret without its data).
func listFiles[T fileObject](ctx context.Context, s *Server, filters *pb.ListFilters, token string,
	find func(store.ReadTx) ([]T, error), annotations func(T) *pb.Annotations, show func(T) T) (items []T, next string, err error) {
	if err := firstErr(validate.Filters(filters), validate.PageToken(token)); err != nil {
		return nil, "", toStatus(err)
	}
	err = s.view(ctx, func(tx store.ReadTx) error {
		all, err := find(tx)
		if err != nil {
			return err
		}
		all = slices.DeleteFunc(all, func(o T) bool { return !matches(filters, o.GetId(), annotations(o)) })
		items, next = page(all, T.GetId, token, pageBudget, show)
		return nil
	})
	return items, next, err
}
