package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"berth/deploy/stack"
	pb "berth/proto/berth/v1"
)

func newStackDeployCmd(g *globalOpts) *cobra.Command {
	var f composeFlags
	var prune, strict, detach bool
	cmd := &cobra.Command{
		Use:     "deploy -c FILE [-c FILE...] [OPTIONS] STACK",
		Aliases: []string{"up"},
		Short:   "Create or update a stack from Compose files",
		Long: `Create or update a stack from Compose files. Services, networks and secrets are
named STACK_NAME and labelled com.docker.stack.namespace=STACK. A service whose spec
is unchanged is not touched; a changed one rolls out under its update_config.
A service that gives no replicas keeps its current scale. Existing networks and
secrets are kept as they are: to change a secret, give it a new name.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(f.files) == 0 {
				return errors.New("no Compose file: give one with -c FILE")
			}
			s, err := stack.Read(cmd.Context(), args[0], f.options(), strict)
			if err != nil {
				return err
			}
			printWarnings(cmd, s.Warnings)
			if err := checkStack(s); err != nil {
				return err
			}
			res, err := deployStack(cmd, g, s, prune)
			if err != nil || detach {
				return err
			}
			return waitStack(cmd, g, res)
		},
	}
	f.register(cmd)
	fs := cmd.Flags()
	fs.BoolVar(&prune, "prune", false, "remove the stack's services that are no longer in the files")
	fs.BoolVar(&strict, "strict", false, "fail, changing nothing, when the files use options berth does not support")
	fs.BoolVarP(&detach, "detach", "d", false, "return at once instead of waiting for created and updated services")
	return cmd
}

func deployStack(cmd *cobra.Command, g *globalOpts, s *stack.Stack, prune bool) (*stack.Result, error) {
	out := cmd.OutOrStdout()
	var res *stack.Result
	err := g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var err error
		res, err = stack.Deploy(ctx, stackAPI{c}, s, prune, func(line string) { fmt.Fprintln(out, line) })
		return err
	})
	if res != nil {
		for _, n := range res.Unchanged {
			fmt.Fprintf(out, "Unchanged service %s\n", n)
		}
	}
	return res, err
}

// waitStack follows the services a deploy created (until they converge)
// and updated (until their rolling update ends), one after the other.
func waitStack(cmd *cobra.Command, g *globalOpts, res *stack.Result) error {
	type wait struct {
		svc    *pb.Service
		update bool
	}
	var all []wait
	for _, s := range res.Created {
		all = append(all, wait{s, false})
	}
	for _, s := range res.Updated {
		all = append(all, wait{s, true})
	}
	sort.Slice(all, func(i, j int) bool {
		return all[i].svc.GetSpec().GetAnnotations().GetName() < all[j].svc.GetSpec().GetAnnotations().GetName()
	})
	out := cmd.OutOrStdout()
	for _, w := range all {
		fmt.Fprintf(out, "%s:\n", w.svc.GetSpec().GetAnnotations().GetName())
		err := g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			if w.update {
				return waitRollout(ctx, c, w.svc, out)
			}
			return waitConverged(ctx, c, w.svc, out)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
