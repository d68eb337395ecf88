package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// listFlags are the -q/--quiet and --filter flags of an ls or ps command,
// as Docker has them. Filters are sent to the manager, which filters
// before it replies.
type listFlags struct {
	quiet   bool
	filters []string
	keys    []string // the keys this command accepts, as Docker's
}

// addListFlags adds -q and --filter, accepting the given filter keys.
func addListFlags(cmd *cobra.Command, keys ...string) *listFlags {
	l := &listFlags{keys: keys}
	cmd.Flags().BoolVarP(&l.quiet, "quiet", "q", false, "print IDs only")
	cmd.Flags().StringArrayVarP(&l.filters, "filter", "f", nil,
		fmt.Sprintf("filter by `KEY=VALUE`, keys: %s (repeatable: either value of a key matches, every label must)", strings.Join(keys, ", ")))
	return l
}

// parse groups the filters by key. A filter without "=", with an empty
// value or with a key the command does not take is an error that names
// the accepted keys.
func (l *listFlags) parse() (map[string][]string, error) {
	out := map[string][]string{}
	for _, f := range l.filters {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		switch {
		case !ok || v == "":
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE, with KEY one of %s", f, strings.Join(l.keys, ", "))
		case !slices.Contains(l.keys, k):
			return nil, fmt.Errorf("--filter %q: unknown filter key %q; accepted keys: %s", f, k, strings.Join(l.keys, ", "))
		}
		out[k] = append(out[k], v)
	}
	return out, nil
}

// common turns the id, name and label filters into the Control API's: IDs
// and names match by prefix, as Docker's do; label=KEY asks for the label,
// label=KEY=VALUE for that value too.
func common(f map[string][]string) *pb.ListFilters {
	lf := &pb.ListFilters{IdPrefixes: f["id"], NamePrefixes: f["name"]}
	for _, l := range f["label"] {
		k, v, _ := strings.Cut(l, "=")
		if lf.Labels == nil {
			lf.Labels = map[string]string{}
		}
		lf.Labels[k] = v
	}
	return lf
}

// oneOf maps each value of a filter to an enum value by its lowercase
// name, refusing others with the accepted names.
func oneOf[E any](key string, values []string, names map[string]E) ([]E, error) {
	var out []E
	for _, v := range values {
		e, ok := names[strings.ToLower(v)]
		if !ok {
			accepted := slices.Sorted(maps.Keys(names))
			return nil, fmt.Errorf("--filter %s=%s: unknown %s; use one of %s", key, v, key, strings.Join(accepted, ", "))
		}
		out = append(out, e)
	}
	return out, nil
}

// nodeIDs resolves node filters (ID, ID prefix or hostname) to node IDs.
func nodeIDs(ctx context.Context, c pb.ControlClient, refs []string) ([]string, error) {
	var out []string
	for _, r := range refs {
		resp, err := c.GetNode(ctx, &pb.GetNodeRequest{NodeId: r})
		if status.Code(err) == codes.NotFound {
			return nil, fmt.Errorf("--filter node=%s: no such node (see `berth node ls`)", r)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetNode().GetId())
	}
	return out, nil
}

// listAll reads every page of a paged list RPC.
func listAll[T any](ctx context.Context, list func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var out []T
	token := ""
	for {
		items, next, err := list(ctx, token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		token = next
	}
}

// printIDs is -q's output: one ID a line.
func printIDs[T any](w io.Writer, items []T, id func(T) string) {
	for _, it := range items {
		fmt.Fprintln(w, id(it))
	}
}
