package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

func newServiceCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Manage services"}
	cmd.AddCommand(newServiceCreateCmd(g), newServiceLsCmd(g), newServiceInspectCmd(g),
		newServiceUpdateCmd(g), newServiceRollbackCmd(g), newServiceScaleCmd(g), newServiceRmCmd(g), newServicePsCmd(g),
		newServiceLogsCmd(g))
	return cmd
}

// serviceLists are the repeatable options of create.
type serviceLists struct {
	name, mode                                string
	env, labels, constraints, prefs           []string
	publish, mounts, networks, sects, configs []string
	containerLabels                           []string
	entrypoint                                string
	detach                                    bool
}

func newServiceCreateCmd(g *globalOpts) *cobra.Command {
	var f serviceFlags
	var l serviceLists
	var ra registryAuthFlags
	var timeout *time.Duration
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a service",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := l.spec(args)
			if err != nil {
				return err
			}
			if err := f.apply(cmd.Flags(), spec, true); err != nil {
				return err
			}
			if err := ra.readPassword(cmd.Flags(), cmd.InOrStdin()); err != nil {
				return err
			}
			if err := ra.apply(cmd.Flags(), ensureContainer(spec), authn.DefaultKeychain, cmd.ErrOrStderr()); err != nil {
				return err
			}
			var svc *pb.Service
			err = g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) (err error) {
				svc, err = createService(ctx, c, spec, l.name != "", cmd.ErrOrStderr())
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), svc.GetId())
			if l.detach {
				return nil
			}
			ctx, cancel := waitContext(cmd.Context(), *timeout)
			defer cancel()
			return g.stream(ctx, func(ctx context.Context, c pb.ControlClient) error {
				return waitConverged(ctx, c, svc, cmd.OutOrStdout())
			})
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	f.register(fs)
	ra.register(fs, false)
	fs.StringVar(&l.name, "name", "", "service name")
	fs.StringVar(&l.mode, "mode", "replicated", "replicated or global")
	fs.StringArrayVarP(&l.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fs.StringArrayVarP(&l.labels, "label", "l", nil, "service label key=value (repeatable)")
	fs.StringArrayVar(&l.containerLabels, "container-label", nil, "container label key=value (repeatable)")
	fs.StringArrayVar(&l.constraints, "constraint", nil, "placement constraint, e.g. node.labels.zone==a (repeatable)")
	fs.StringArrayVar(&l.prefs, "placement-pref", nil, "placement preference, e.g. spread=node.labels.zone (repeatable)")
	fs.StringArrayVarP(&l.publish, "publish", "p", nil, "publish a port PUBLISHED:TARGET[/udp] (repeatable)")
	fs.StringArrayVar(&l.mounts, "mount", nil, "mount type=volume|bind|tmpfs,source=S,target=T[,readonly] (repeatable)")
	fs.StringArrayVar(&l.networks, "network", nil, "network to attach: NAME, or name=NAME,alias=ALIAS[,alias=...] (repeatable)")
	fs.StringArrayVar(&l.sects, "secret", nil, secretFlagHelp)
	fs.StringArrayVar(&l.configs, "config", nil, configFlagHelp)
	fs.StringVar(&l.entrypoint, "entrypoint", "", "replace the image's entrypoint (split on spaces)")
	fs.BoolVarP(&l.detach, "detach", "d", false, waitFlagHelp)
	timeout = addTimeoutFlag(fs)
	return cmd
}

// spec builds a service spec from create's positional args and lists.
func (l *serviceLists) spec(args []string) (*pb.ServiceSpec, error) {
	mode, err := modeFlag(l.mode)
	if err != nil {
		return nil, err
	}
	labels, err := flagparse.Labels("label", l.labels)
	if err != nil {
		return nil, err
	}
	clabels, err := flagparse.Labels("container-label", l.containerLabels)
	if err != nil {
		return nil, err
	}
	c := &pb.ContainerSpec{Image: args[0], Args: args[1:], Env: l.env, Labels: clabels}
	if l.entrypoint != "" {
		c.Command = strings.Fields(l.entrypoint)
	}
	s := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: l.name, Labels: labels},
		Mode:        mode,
		Task:        &pb.TaskSpec{Container: c, Placement: &pb.Placement{Constraints: l.constraints}},
		Endpoint:    &pb.EndpointSpec{},
	}
	if s.Annotations.Name == "" {
		s.Annotations.Name = defaultName(args[0])
	}
	for _, p := range l.prefs {
		d, ok := strings.CutPrefix(p, "spread=")
		if !ok {
			return nil, fmt.Errorf("--placement-pref %q: want spread=node.labels.NAME", p)
		}
		s.Task.Placement.Preferences = append(s.Task.Placement.Preferences, &pb.PlacementPreference{SpreadDescriptor: d})
	}
	for _, p := range l.publish {
		pc, err := flagparse.Port(p)
		if err != nil {
			return nil, err
		}
		s.Endpoint.Ports = append(s.Endpoint.Ports, pc)
	}
	for _, m := range l.mounts {
		mc, err := flagparse.Mount(m)
		if err != nil {
			return nil, err
		}
		c.Mounts = append(c.Mounts, mc)
	}
	for _, n := range l.networks {
		att, err := flagparse.Network(n)
		if err != nil {
			return nil, err
		}
		s.Networks = append(s.Networks, att)
	}
	if c.Secrets, err = secretRefs("secret", l.sects); err != nil {
		return nil, err
	}
	if c.Configs, err = configRefs("config", l.configs); err != nil {
		return nil, err
	}
	return s, nil
}

// defaultName derives a service name from an image, as "app" from "reg:5000/team/app:v1".
func defaultName(image string) string {
	n := image
	if i := strings.LastIndex(n, "/"); i >= 0 {
		n = n[i+1:]
	}
	n, _, _ = strings.Cut(n, "@")
	n, _, _ = strings.Cut(n, ":")
	return n
}

func newServiceUpdateCmd(g *globalOpts) *cobra.Command {
	var f serviceFlags
	var image, args string
	var envAdd, envRm, lblAdd, lblRm, conAdd, conRm, pubAdd, pubRm, secAdd, secRm, netAdd, netRm, cfgAdd, cfgRm []string
	var force, rollback, detach bool
	var ra registryAuthFlags
	cmd := &cobra.Command{Use: "update [OPTIONS] SERVICE", Short: "Change a service's spec (a rolling update)", Args: cobra.ExactArgs(1)}
	fs := cmd.Flags()
	f.register(fs)
	ra.register(fs, true)
	fs.StringVar(&image, "image", "", "new image")
	fs.StringVar(&args, "args", "", "new command arguments (split on spaces)")
	fs.StringArrayVar(&envAdd, "env-add", nil, "add or change an environment variable")
	fs.StringArrayVar(&envRm, "env-rm", nil, "remove an environment variable")
	fs.StringArrayVar(&lblAdd, "label-add", nil, "add or change a service label")
	fs.StringArrayVar(&lblRm, "label-rm", nil, "remove a service label")
	fs.StringArrayVar(&conAdd, "constraint-add", nil, "add a placement constraint")
	fs.StringArrayVar(&conRm, "constraint-rm", nil, "remove a placement constraint")
	fs.StringArrayVar(&pubAdd, "publish-add", nil, "publish a port")
	fs.StringArrayVar(&pubRm, "publish-rm", nil, "unpublish a target port")
	fs.StringArrayVar(&secAdd, "secret-add", nil, secretFlagHelp)
	fs.StringArrayVar(&secRm, "secret-rm", nil, "stop exposing a secret, by name or target (repeatable)")
	fs.StringArrayVar(&netAdd, "network-add", nil, "attach a network: NAME, or name=NAME,alias=ALIAS[,alias=...] (repeatable)")
	fs.StringArrayVar(&netRm, "network-rm", nil, "detach a network, by name or ID (repeatable)")
	fs.StringArrayVar(&cfgAdd, "config-add", nil, configFlagHelp)
	fs.StringArrayVar(&cfgRm, "config-rm", nil, "stop exposing a config, by name or target (repeatable)")
	fs.BoolVar(&force, "force", false, "redeploy every task even if nothing changed")
	fs.BoolVar(&rollback, "rollback", false, "go back to the previous spec (as 'berth service rollback')")
	fs.BoolVarP(&detach, "detach", "d", false, "return at once instead of following the rolling update")
	timeout := addTimeoutFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, a []string) error {
		if rollback && (fs.Changed("registry-auth") || fs.Changed("registry-user")) {
			return errors.New("--rollback restores the previous spec with its credentials: drop --registry-auth and --registry-user")
		}
		if err := ra.readPassword(fs, cmd.InOrStdin()); err != nil {
			return err
		}
		var updated *pb.Service
		err := g.edit(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			cur, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: a[0]})
			if err != nil {
				return err
			}
			svc := cur.GetService()
			spec := proto.Clone(svc.GetSpec()).(*pb.ServiceSpec)
			if !rollback {
				if err := f.apply(fs, spec, false); err != nil {
					return err
				}
				ct := ensureContainer(spec)
				if image != "" {
					ct.Image = image
				}
				if fs.Changed("args") {
					ct.Args = strings.Fields(args)
				}
				ct.Env = editList(ct.Env, envAdd, envRm, true)
				if spec.Annotations.Labels, err = editMap(spec.Annotations.Labels, lblAdd, lblRm, "label"); err != nil {
					return err
				}
				p := ensurePlacement(spec.Task)
				p.Constraints = editList(p.Constraints, conAdd, conRm, false)
				if err := editPorts(spec, pubAdd, pubRm); err != nil {
					return err
				}
				if err := editSecrets(ct, secAdd, secRm); err != nil {
					return err
				}
				if err := editNetworks(ctx, c, spec, netAdd, netRm); err != nil {
					return err
				}
				if err := editConfigs(ct, cfgAdd, cfgRm); err != nil {
					return err
				}
				if force {
					spec.Task.ForceUpdate++
				}
				if err := ra.apply(fs, ct, authn.DefaultKeychain, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			resp, err := c.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: spec, Rollback: rollback})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), svc.GetSpec().GetAnnotations().GetName())
			updated = resp.GetService()
			return nil
		})
		if err != nil || detach {
			return err
		}
		return followRollout(cmd, g, updated, *timeout)
	}
	return cmd
}

func editPorts(spec *pb.ServiceSpec, add, rm []string) error {
	if spec.Endpoint == nil {
		spec.Endpoint = &pb.EndpointSpec{}
	}
	drop := map[uint32]bool{}
	for _, r := range rm {
		p, err := flagparse.Port(r)
		if err != nil {
			return err
		}
		drop[p.GetTargetPort()] = true
	}
	var kept []*pb.PortConfig
	for _, p := range spec.Endpoint.Ports {
		if !drop[p.GetTargetPort()] {
			kept = append(kept, p)
		}
	}
	for _, a := range add {
		p, err := flagparse.Port(a)
		if err != nil {
			return err
		}
		kept = append(kept, p)
	}
	spec.Endpoint.Ports = kept
	return nil
}

func newServiceScaleCmd(g *globalOpts) *cobra.Command {
	var detach bool
	var timeout *time.Duration
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS [SERVICE=REPLICAS...]",
		Short: "Change the replica count of services",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := map[string]int64{}
			var order []string
			for _, a := range args {
				name, n, ok := strings.Cut(a, "=")
				r, err := strconv.ParseInt(n, 10, 64)
				if !ok || err != nil || name == "" {
					return fmt.Errorf("%q: want SERVICE=REPLICAS, e.g. web=3", a)
				}
				want[name] = r
				order = append(order, name)
			}
			var scaled []*pb.Service
			err := g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				for _, name := range order {
					cur, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: name})
					if err != nil {
						return err
					}
					svc := cur.GetService()
					if svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
						return fmt.Errorf("%s is a global service: it runs one task per node and cannot be scaled", name)
					}
					spec := proto.Clone(svc.GetSpec()).(*pb.ServiceSpec)
					spec.Replicas = proto.Int64(want[name])
					resp, err := c.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: svc.GetId(), ServiceVersion: svc.GetMeta().GetVersion(), Spec: spec})
					if err != nil {
						return err
					}
					scaled = append(scaled, resp.GetService())
					fmt.Fprintf(cmd.OutOrStdout(), "%s scaled to %d\n", name, want[name])
				}
				return nil
			})
			if err != nil || detach {
				return err
			}
			ctx, cancel := waitContext(cmd.Context(), *timeout)
			defer cancel()
			for _, svc := range scaled {
				fmt.Fprintf(cmd.OutOrStdout(), "%s:\n", svc.GetSpec().GetAnnotations().GetName())
				if err := g.stream(ctx, func(ctx context.Context, c pb.ControlClient) error {
					return waitConverged(ctx, c, svc, cmd.OutOrStdout())
				}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, waitFlagHelp)
	timeout = addTimeoutFlag(cmd.Flags())
	return cmd
}

func newServiceRmCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE [SERVICE...]",
		Aliases: []string{"remove"},
		Short:   "Remove services",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				for _, a := range args {
					if _, err := c.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: a}); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), a)
				}
				return nil
			})
		},
	}
}
