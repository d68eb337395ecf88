package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

func newServiceInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect SERVICE [SERVICE...]", Short: "Show services in detail (JSON, or --pretty)", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	pretty := cmd.Flags().Bool("pretty", false, "print a human-readable summary, update status included")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *pretty && cmd.Flags().Changed("format") {
			return errors.New("--pretty and --format both choose the output: use one")
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var out []*pb.Service
			for _, a := range args {
				r, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: a})
				if err != nil {
					return err
				}
				out = append(out, r.GetService())
			}
			if *pretty {
				req := &pb.ListTasksRequest{}
				for _, svc := range out {
					req.ServiceIds = append(req.ServiceIds, svc.GetId())
				}
				tasks, err := c.ListTasks(ctx, req)
				if err != nil {
					return err
				}
				for i, svc := range out {
					if i > 0 {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					printPretty(cmd.OutOrStdout(), svc, tasks.GetTasks())
				}
				return nil
			}
			return printObjects(cmd.OutOrStdout(), *format, out)
		})
	}
	return cmd
}

// updateState is an update status as `service ls` shows it: the state in
// Docker's words ("updating", "rollback_paused"), or empty.
func updateState(st *pb.UpdateStatus) string {
	if st.GetState() == pb.UpdateStatus_STATE_UNKNOWN {
		return ""
	}
	return lowerEnum(st.GetState().String(), "STATE_")
}

// printPretty writes a service the way `docker service inspect --pretty`
// does: one field a line, update status and policies included.
func printPretty(w io.Writer, s *pb.Service, tasks []*pb.Task) {
	spec := s.GetSpec()
	fmt.Fprintf(w, "ID:\t\t%s\n", s.GetId())
	fmt.Fprintf(w, "Name:\t\t%s\n", spec.GetAnnotations().GetName())
	if spec.GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
		fmt.Fprintln(w, "Service Mode:\tGlobal")
	} else {
		fmt.Fprintf(w, "Service Mode:\tReplicated\n Replicas:\t%d\n", spec.GetReplicas())
	}
	if st := s.GetUpdateStatus(); st != nil {
		fmt.Fprintln(w, "UpdateStatus:")
		fmt.Fprintf(w, " State:\t\t%s\n", updateState(st))
		if st.GetStartedAt() != nil {
			fmt.Fprintf(w, " Started:\t%s\n", st.GetStartedAt().AsTime().Local().Format(time.RFC3339))
		}
		if st.GetCompletedAt() != nil {
			fmt.Fprintf(w, " Completed:\t%s\n", st.GetCompletedAt().AsTime().Local().Format(time.RFC3339))
		}
		fmt.Fprintf(w, " Message:\t%s\n", st.GetMessage())
	}
	c := spec.GetTask().GetContainer()
	fmt.Fprintln(w, "ContainerSpec:")
	fmt.Fprintf(w, " Image:\t\t%s\n", c.GetImage())
	if len(c.GetArgs()) > 0 {
		fmt.Fprintf(w, " Args:\t\t%s\n", strings.Join(c.GetArgs(), " "))
	}
	for _, r := range c.GetSecrets() {
		fmt.Fprintf(w, " Secret:\t%s at /run/secrets/%s\n", r.GetSecretName(), r.GetFileName())
	}
	for _, r := range c.GetConfigs() {
		fmt.Fprintf(w, " Config:\t%s at %s\n", r.GetConfigName(), r.GetFileName())
	}
	if ports := portsColumn(s, tasks); ports != "" {
		fmt.Fprintf(w, "Ports:\t\t%s\n", ports)
	}
	printUpdateConfig(w, "UpdateConfig", spec.GetUpdate())
	printUpdateConfig(w, "RollbackConfig", spec.GetRollback())
	if s.GetPreviousSpec() != nil {
		fmt.Fprintf(w, "PreviousSpec:\n Image:\t\t%s\n", s.GetPreviousSpec().GetTask().GetContainer().GetImage())
	}
}

func printUpdateConfig(w io.Writer, title string, u *pb.UpdateConfig) {
	fmt.Fprintf(w, "%s:\n", title)
	if u == nil {
		fmt.Fprintln(w, " (defaults: parallelism 1, on failure pause, monitor 5s, stop-first)")
		return
	}
	fmt.Fprintf(w, " Parallelism:\t%d\n", u.GetParallelism())
	if d := u.GetDelay().AsDuration(); d > 0 {
		fmt.Fprintf(w, " Delay:\t\t%s\n", d)
	}
	fmt.Fprintf(w, " On failure:\t%s\n", lowerEnum(u.GetFailureAction().String(), "FAILURE_ACTION_"))
	monitor := "5s"
	if u.Monitor != nil {
		monitor = u.GetMonitor().AsDuration().String()
	}
	fmt.Fprintf(w, " Monitoring Period: %s\n", monitor)
	fmt.Fprintf(w, " Max failure ratio: %g\n", u.GetMaxFailureRatio())
	fmt.Fprintf(w, " Update order:      %s\n", strings.ReplaceAll(lowerEnum(u.GetOrder().String(), "ORDER_"), "_", "-"))
}

// healthNote is a running task's health as `docker ps` shows it:
// " (healthy)", " (unhealthy)", " (health: starting)", or nothing.
func healthNote(t *pb.Task) string {
	if t.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING {
		return ""
	}
	switch t.GetStatus().GetContainer().GetHealth() {
	case pb.ContainerStatus_HEALTH_HEALTHY:
		return " (healthy)"
	case pb.ContainerStatus_HEALTH_UNHEALTHY:
		return " (unhealthy)"
	case pb.ContainerStatus_HEALTH_STARTING:
		return " (health: starting)"
	}
	return ""
}

// taskErr is a task's error column: its error, else the last failed
// health probe of a task not healthy yet.
func taskErr(t *pb.Task) string {
	if e := t.GetStatus().GetErr(); e != "" {
		return e
	}
	if out := strings.TrimSpace(t.GetStatus().GetContainer().GetHealthOutput()); out != "" {
		return "health check: " + out
	}
	return ""
}
