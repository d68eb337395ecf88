package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	pb "berth/proto/berth/v1"
)

// eventsOpts are the flags of `events`.
type eventsOpts struct {
	since, until, format string
	filters              []string
}

func newEventsCmd(g *globalOpts) *cobra.Command {
	var o eventsOpts
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Stream what changes in the cluster: services, tasks and their states, nodes up and down",
		Long: "Stream what changes in the cluster. With --since, first the changes the manager still\n" +
			"holds from then on (the last 10000 or so): a client that comes back with the time of\n" +
			"the last event it saw misses nothing held. With --until it stops at that time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request(time.Now())
			if err != nil {
				return err
			}
			return g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				return printEvents(ctx, c, req, o.format, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.since, "since", "", "show held events since a time (2026-01-02T15:04:05Z, a Unix time, or a duration ago such as 10m)")
	fs.StringVar(&o.until, "until", "", "stop at a time (same forms as --since)")
	fs.StringArrayVarP(&o.filters, "filter", "f", nil, "type=service|task|node|network|secret|config, name=NAME or ID, event=ACTION (repeat: any of a key)")
	fs.StringVar(&o.format, "format", "text", "output format: text or json (one object a line)")
	return cmd
}

// request turns the flags into an EventsRequest.
func (o *eventsOpts) request(now time.Time) (*pb.EventsRequest, error) {
	if o.format != "text" && o.format != "json" {
		return nil, fmt.Errorf("--format %q: use text or json", o.format)
	}
	req := &pb.EventsRequest{}
	for _, f := range []struct {
		flag, v string
		dst     *int64
	}{{"since", o.since, &req.SinceUnixNano}, {"until", o.until, &req.UntilUnixNano}} {
		if f.v == "" {
			continue
		}
		t, err := parseSince(f.v, now)
		if err != nil {
			return nil, fmt.Errorf("--%s%s", f.flag, strings.TrimPrefix(err.Error(), "--since"))
		}
		*f.dst = t.UnixNano()
	}
	for _, f := range o.filters {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok || v == "":
			return nil, fmt.Errorf("--filter %q: use KEY=VALUE with type, name or event", f)
		case k == "type":
			req.Types = append(req.Types, v)
		case k == "name":
			req.Names = append(req.Names, v)
		case k == "event":
			req.Actions = append(req.Actions, v)
		default:
			return nil, fmt.Errorf("--filter %s: unknown key; use type, name or event", k)
		}
	}
	return req, nil
}

// printEvents prints events as they come, one a line.
func printEvents(ctx context.Context, c pb.ControlClient, req *pb.EventsRequest, format string, out, errOut io.Writer) error {
	st, err := c.Events(ctx, req)
	if err != nil {
		return err
	}
	return recvAll(ctx, st.Recv, func(m *pb.EventsMessage) error {
		if n := m.GetNotice(); n != "" {
			fmt.Fprintln(errOut, "berth:", n)
			return nil
		}
		return printEvent(out, m.GetEvent(), format)
	})
}

// printEvent writes TIME TYPE ACTION NAME (id=ID, key=value, ...) or a
// JSON object.
func printEvent(w io.Writer, ev *pb.Event, format string) error {
	if format == "json" {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	attrs := []string{"id=" + ev.GetId()}
	keys := make([]string, 0, len(ev.GetAttributes()))
	for k := range ev.GetAttributes() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, k+"="+ev.GetAttributes()[k])
	}
	ts := time.Unix(0, ev.GetTimeUnixNano()).UTC().Format(time.RFC3339Nano)
	_, err := fmt.Fprintf(w, "%s %s %s %s (%s)\n", ts, ev.GetType(), ev.GetAction(), ev.GetName(), strings.Join(attrs, ", "))
	return err
}
