package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// addFormatFlag adds --format to a list or inspect command: table or json,
// or a Go template (see formatHelp).
func addFormatFlag(cmd *cobra.Command, def string) *string {
	f := new(string)
	cmd.Flags().StringVar(f, "format", def, "output `FORMAT`: "+formatHelp)
	return f
}

// checkFormat refuses a --format that is neither table, json nor a Go
// template that parses.
func checkFormat(f string) error {
	if f == "table" || f == "json" {
		return nil
	}
	_, err := parseTemplate(f)
	return err
}

// printJSON writes messages as one JSON array, fields named as in the .proto files.
func printJSON[M proto.Message](w io.Writer, msgs []M) error {
	raw := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

// table writes aligned columns; the first row is the header.
func table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// ago renders a past time as docker does: "3 seconds ago".
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "less than a second ago"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	default:
		return plural(int(d.Hours()/24), "day") + " ago"
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// shortID is the 12-character form of an ID used in tables.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// lowerEnum turns ENUM_PREFIX_VALUE into "value".
func lowerEnum(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}
