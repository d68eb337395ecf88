package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

// Secrets and configs are both named files for containers: the code here
// serves `berth secret` and `berth config` alike.

// readData reads a secret's or config's content from file, or from stdin
// for "-". The manager refuses empty and oversized ones.
func readData(stdin io.Reader, file, noun string) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read the %s from stdin: %w", noun, err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", noun, err)
	}
	return b, nil
}

// newFileCreateCmd is `berth secret create` and `berth config create`:
// create stores the object with the kind's RPC and returns its ID.
func newFileCreateCmd(g *globalOpts, noun, long string, create func(context.Context, pb.ControlClient, *pb.Annotations, []byte) (string, error)) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME FILE|-",
		Short: fmt.Sprintf("Create a %s from a file or from stdin (-)", noun),
		Long:  long,
		Args:  cobra.ExactArgs(2),
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, noun+" label `KEY=VALUE` (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		lbls, err := flagparse.Labels("label", labels)
		if err != nil {
			return err
		}
		data, err := readData(cmd.InOrStdin(), args[1], noun)
		if err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			id, err := create(ctx, c, &pb.Annotations{Name: args[0], Labels: lbls}, data)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		})
	}
	return cmd
}

// fileObject is what `secret ls` and `config ls` show of one.
type fileObject struct {
	id          string
	meta        *pb.Meta
	annotations *pb.Annotations
	msg         proto.Message // the object, for --format json
}

// newFileLsCmd is `berth secret ls` and `berth config ls`: list reads
// the objects that match the filters with the kind's RPC.
func newFileLsCmd(g *globalOpts, short string, list func(context.Context, pb.ControlClient, *pb.ListFilters) ([]fileObject, error)) *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: short, Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "label")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		f, err := lf.parse()
		if err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			objs, err := list(ctx, c, common(f))
			if err != nil {
				return err
			}
			sort.Slice(objs, func(i, j int) bool { return objs[i].annotations.GetName() < objs[j].annotations.GetName() })
			return printFileObjects(cmd.OutOrStdout(), *format, lf.quiet, objs)
		})
	}
	return cmd
}

// printFileObjects lists secrets or configs: their IDs alone with quiet,
// else JSON, a table or a template over the table's columns.
func printFileObjects(w io.Writer, format string, quiet bool, objs []fileObject) error {
	if quiet {
		for _, o := range objs {
			fmt.Fprintln(w, o.id)
		}
		return nil
	}
	if format == "json" {
		msgs := make([]proto.Message, len(objs))
		for i, o := range objs {
			msgs[i] = o.msg
		}
		return printJSON(w, msgs)
	}
	now := time.Now()
	rows := [][]string{{"ID", "NAME", "CREATED", "UPDATED", "LABELS"}}
	for _, o := range objs {
		rows = append(rows, []string{o.id, o.annotations.GetName(),
			ago(o.meta.GetCreatedAt().AsTime(), now), ago(o.meta.GetUpdatedAt().AsTime(), now),
			labelString(o.annotations.GetLabels())})
	}
	return printRows(w, format, rows)
}

// newFileRmCmd is `berth secret rm` and `berth config rm`: remove
// deletes one with the kind's RPC (the managers refuse one in use).
func newFileRmCmd(g *globalOpts, noun string, remove func(context.Context, pb.ControlClient, string) error) *cobra.Command {
	upper := strings.ToUpper(noun)
	cmd := &cobra.Command{Use: fmt.Sprintf("rm %s [%s...]", upper, upper), Aliases: []string{"remove"}, Short: fmt.Sprintf("Remove %ss no service uses", noun), Args: cobra.MinimumNArgs(1)}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			for _, id := range args {
				if err := remove(ctx, c, id); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			return nil
		})
	}
	return cmd
}

// parseRefs reads --secret or --config flags into references.
func parseRefs[R any](flag string, vals []string, parse func(flag, s string) (R, error)) ([]R, error) {
	var refs []R
	for _, v := range vals {
		ref, err := parse(flag, v)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// refKeys are what update's --secret-rm and --config-rm match a
// reference by: the object's name or ID, or the reference's target.
type refKeys struct{ name, id, target string }

// editRefs drops from cur the references rm names (by name, ID or
// target; target brings a target to its stored form) and those whose
// target an added one takes, then appends adds.
func editRefs[R any](cur, adds []R, rm []string, keys func(R) refKeys, target func(string) string) []R {
	drop := map[string]bool{}
	for _, r := range rm {
		drop[r] = true
		drop["target:"+target(r)] = true
	}
	for _, a := range adds {
		drop["target:"+target(keys(a).target)] = true
	}
	var keep []R
	for _, ref := range cur {
		k := keys(ref)
		if drop[k.name] || drop[k.id] || drop["target:"+target(k.target)] {
			continue
		}
		keep = append(keep, ref)
	}
	return append(keep, adds...)
}
