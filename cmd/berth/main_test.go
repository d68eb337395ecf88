package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUnknownSubcommandIsAnError: a word that is no command of a group
// fails naming it (the CLI exits 1), instead of printing help.
func TestUnknownSubcommandIsAnError(t *testing.T) {
	for args, want := range map[string]string{
		"node foo":        `unknown command "foo" for "berth node"`,
		"service frob x":  `unknown command "frob" for "berth service"`,
		"service lgs web": `(did you mean "logs"?)`,
		"cluster nope":    `unknown command "nope" for "berth cluster"`,
		"nope":            `unknown command "nope" for "berth"`,
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(strings.Fields(args))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("berth %s: %v, want an error with %q", args, err, want)
		}
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"service"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "logs") {
		t.Errorf("berth service alone: %v, want its help:\n%s", err, out.String())
	}
}
