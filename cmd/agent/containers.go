package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"berth/agent/image"
	"berth/agent/runtime"
)

// The containers of berth-agent run -d outlive the run: ps, logs, stop
// and rm find them again in the data dir (runtime.Adopt), as docker's do.

// runCommands are run and the commands that handle its containers.
func runCommands() []*cobra.Command {
	return []*cobra.Command{newRunCmd(), newPsCmd(), newInspectCmd(), newLogsCmd(), newStopCmd(), newRmCmd()}
}

// containerCmd is a command on berth-agent run's containers: it opens
// the data dir and adopts them before do, and detaches after.
func containerCmd(use, short string, args cobra.PositionalArgs, flags func(*cobra.Command), do func(ctx context.Context, cs *containerSet, args []string) error) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use: use, Short: short, Args: args,
		SilenceUsage: true, SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			images, rt, err := openStores(dataDir, image.Config{}, "", log)
			if err != nil {
				return err
			}
			defer images.Close()
			defer rt.Close()
			if _, err := rt.Adopt(cmd.Context()); err != nil {
				log.Warn("finding containers", "err", err)
			}
			// Only read (Peek), and not closed: Close would tidy the cgroup
			// parent, which is the node agent's business.
			node, err := openNode(dataDir)
			if err != nil {
				return err
			}
			return do(cmd.Context(), &containerSet{rt: rt, node: node, images: images, out: cmd.OutOrStdout(), dataDir: dataDir}, args)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "/var/lib/berth/agent", "directory for images, containers and volumes")
	if flags != nil {
		flags(cmd)
	}
	return cmd
}

// containerSet is berth-agent run's containers on this node.
type containerSet struct {
	rt     *runtime.Runtime
	node   *runtime.Runtime // the node agent's, read only; nil when none
	images *image.Store
	out    io.Writer
	// dataDir holds the --network files of run's containers (run_network.go).
	dataDir string
}

func (cs *containerSet) get(id string) (*runtime.Container, error) {
	c, err := cs.rt.Get(id)
	if errors.Is(err, runtime.ErrNotFound) && cs.node != nil && cs.node.Taken(id) {
		return nil, fmt.Errorf("container %s is a task of this node's agent, which stops and removes it: use berth service scale or rm", id)
	}
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, fmt.Errorf("no container %s here (berth-agent ps lists them)", id)
	}
	return c, err
}

func newLogsCmd() *cobra.Command {
	var follow bool
	return containerCmd("logs [-f] CONTAINER", "Print a container's output", cobra.ExactArgs(1),
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container exits")
		},
		func(ctx context.Context, cs *containerSet, args []string) error {
			if _, err := cs.get(args[0]); err != nil {
				return err
			}
			return cs.rt.Logs(ctx, args[0], follow, cs.out)
		})
}

func newStopCmd() *cobra.Command {
	var grace time.Duration
	return containerCmd("stop [-t GRACE] CONTAINER...", "Stop running containers: SIGTERM, then SIGKILL after the grace", cobra.MinimumNArgs(1),
		func(cmd *cobra.Command) {
			cmd.Flags().DurationVarP(&grace, "time", "t", 10*time.Second, "grace period between SIGTERM and SIGKILL")
		},
		func(ctx context.Context, cs *containerSet, args []string) error {
			var errs []error
			for _, id := range args {
				c, err := cs.get(id)
				if err == nil && c.Running() {
					_, err = c.Stop(ctx, grace)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cs.out, id)
			}
			return errors.Join(errs...)
		})
}

func newRmCmd() *cobra.Command {
	var force bool
	return containerCmd("rm [-f] CONTAINER...", "Remove containers and their root filesystems", cobra.MinimumNArgs(1),
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
		},
		func(ctx context.Context, cs *containerSet, args []string) error {
			var errs []error
			for _, id := range args {
				if err := cs.remove(ctx, id, force); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cs.out, id)
			}
			return errors.Join(errs...)
		})
}

// remove deletes a container's state, logs and rootfs.
func (cs *containerSet) remove(ctx context.Context, id string, force bool) error {
	c, err := cs.get(id)
	if err != nil {
		return err
	}
	if c.Running() && !force {
		return fmt.Errorf("container %s is running: stop it first (berth-agent stop %s), or rm -f", id, id)
	}
	if err := c.Delete(ctx); err != nil {
		return err
	}
	if err := cs.images.Remove(ctx, id); err != nil {
		return fmt.Errorf("remove rootfs of %s: %w", id, err)
	}
	// Its attachment, if it had one, ended with it: the daemon watches it.
	removeNetFiles(cs.dataDir, id)
	return nil
}
