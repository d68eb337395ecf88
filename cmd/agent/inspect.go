package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"berth/agent/runtime"
)

// ps and inspect show every container of the node, as docker's do: those
// of berth-agent run and the tasks the node's agent runs. The agent's are
// read from their records and never adopted: that agent owns them.

// nodeDir is the node agent's runtime under the data dir (agent.New).
const nodeDir = "runtime"

// view is one container as ps and inspect show it.
type view struct {
	ID      string            `json:"id"`
	Owner   string            `json:"owner"` // "run" (berth-agent run) or "agent" (a task)
	Created time.Time         `json:"created"`
	Command []string          `json:"command"`
	Labels  map[string]string `json:"labels,omitempty"`
	State   viewState         `json:"state"`
	// Networks are a run container's attachable networks (--network).
	Networks *netInfo `json:"networks,omitempty"`
}

type viewState struct {
	Status     string     `json:"status"` // running or exited
	Pid        int        `json:"pid,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

func newView(in runtime.Info, owner string) view {
	v := view{ID: in.ID, Owner: owner, Created: in.CreatedAt, Command: in.Spec.Args, Labels: in.Spec.Labels}
	switch {
	case in.Running:
		v.State = viewState{Status: "running", Pid: in.Pid}
	case in.Exit != nil:
		v.State = viewState{Status: "exited", ExitCode: &in.Exit.Code, FinishedAt: &in.Exit.FinishedAt}
	default:
		v.State = viewState{Status: "exited"} // ended unwatched; its agent records how
	}
	return v
}

// status is how ps shows a container: running, or its exit and when.
func (v view) status() string {
	if v.State.ExitCode == nil {
		return v.State.Status
	}
	return fmt.Sprintf("exited (%d) %s ago", *v.State.ExitCode, time.Since(*v.State.FinishedAt).Round(time.Second))
}

// views reads the node's containers: berth-agent run's, then the agent's.
func (cs *containerSet) views() ([]view, error) {
	var out []view
	for _, src := range []struct {
		rt    *runtime.Runtime
		owner string
	}{{cs.rt, "run"}, {cs.node, "agent"}} {
		if src.rt == nil {
			continue
		}
		infos, err := src.rt.Peek()
		if err != nil {
			return nil, err
		}
		for _, in := range infos {
			v := newView(in, src.owner)
			if src.owner == "run" {
				v.Networks = readNetInfo(cs.dataDir, in.ID)
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// openNode opens the node agent's runtime under dataDir for reading, or
// returns nil when it has no container recorded there.
func openNode(dataDir string) (*runtime.Runtime, error) {
	dir := filepath.Join(dataDir, nodeDir)
	if !runtime.HasState(dir) {
		return nil, nil
	}
	return runtime.New(runtime.Config{DataDir: dir})
}

// psFilter is ps's --filter: label=KEY, label=KEY=VALUE or
// status=running|exited; a container must match them all, as in docker.
type psFilter struct {
	labels map[string]*string // nil value: the key alone
	status string
}

func parsePsFilters(fs []string) (*psFilter, error) {
	f := &psFilter{labels: map[string]*string{}}
	for _, s := range fs {
		key, val, ok := strings.Cut(s, "=")
		switch {
		case !ok || val == "":
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE, e.g. label=app=web", s)
		case key == "label":
			k, v, hasVal := strings.Cut(val, "=")
			f.labels[k] = nil
			if hasVal {
				f.labels[k] = &v
			}
		case key == "status" && (val == "running" || val == "exited"):
			f.status = val
		case key == "status":
			return nil, fmt.Errorf("--filter %q: status is running or exited", s)
		default:
			return nil, fmt.Errorf("--filter %q: unknown key %q; the keys are label and status", s, key)
		}
	}
	return f, nil
}

func (f *psFilter) match(v view) bool {
	if f.status != "" && v.State.Status != f.status {
		return false
	}
	for k, want := range f.labels {
		got, ok := v.Labels[k]
		if !ok || (want != nil && got != *want) {
			return false
		}
	}
	return true
}

func newPsCmd() *cobra.Command {
	var filters []string
	var quiet bool
	var format string
	return containerCmd("ps [-q] [--filter KEY=VALUE] [--format json]", "List the node's containers: berth-agent run's and its agent's tasks", cobra.NoArgs,
		func(cmd *cobra.Command) {
			cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "show only containers with label=KEY[=VALUE] or status=running|exited (repeatable: all must match)")
			cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the IDs")
			cmd.Flags().StringVar(&format, "format", "", "json: print the containers as inspect does")
		},
		func(_ context.Context, cs *containerSet, _ []string) error {
			f, err := parsePsFilters(filters)
			if err != nil {
				return err
			}
			if format != "" && format != "json" {
				return fmt.Errorf("--format %q: the only format is json", format)
			}
			all, err := cs.views()
			if err != nil {
				return err
			}
			shown := []view{}
			for _, v := range all {
				if f.match(v) {
					shown = append(shown, v)
				}
			}
			return printPs(cs.out, shown, quiet, format)
		})
}

func printPs(w io.Writer, vs []view, quiet bool, format string) error {
	switch {
	case quiet:
		for _, v := range vs {
			fmt.Fprintln(w, v.ID)
		}
		return nil
	case format == "json":
		return writeJSON(w, vs)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tSTATUS\tCOMMAND")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.ID, v.status(), strings.Join(v.Command, " "))
	}
	return tw.Flush()
}

func newInspectCmd() *cobra.Command {
	return containerCmd("inspect CONTAINER...", "Print containers' details as JSON: labels, command, state, networks", cobra.MinimumNArgs(1), nil,
		func(_ context.Context, cs *containerSet, args []string) error {
			all, err := cs.views()
			if err != nil {
				return err
			}
			byID := map[string]view{}
			for _, v := range all {
				byID[v.ID] = v
			}
			found := []view{}
			var missing []string
			for _, id := range args {
				if v, ok := byID[id]; ok {
					found = append(found, v)
				} else {
					missing = append(missing, id)
				}
			}
			if err := writeJSON(cs.out, found); err != nil {
				return err
			}
			if len(missing) > 0 {
				return fmt.Errorf("no container %s here (berth-agent ps lists them)", strings.Join(missing, ", "))
			}
			return nil
		})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
