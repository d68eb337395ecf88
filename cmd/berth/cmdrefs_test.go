package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// commandRef is a berth command quoted in a message: `berth WORD...` or
// 'berth WORD...'.
var commandRef = regexp.MustCompile("[`']berth ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")

// TestMessagesNameRealCommands: every berth command that the code quotes
// to its users (errors, help, logs) exists, down to its subcommand.
func TestMessagesNameRealCommands(t *testing.T) {
	root := newRootCmd()
	seen := 0
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") || strings.HasSuffix(p, ".pb.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range commandRef.FindAllStringSubmatch(string(b), -1) {
			seen++
			cmd, _, err := root.Find([]string{m[1]})
			if err != nil || cmd == root {
				t.Errorf("%s quotes `berth %s`: no such command", p, m[1])
				continue
			}
			if cmd.HasSubCommands() && m[2] != "" {
				if sub, _, err := cmd.Find([]string{m[2]}); err != nil || sub == cmd {
					t.Errorf("%s quotes `berth %s %s`: no such command", p, m[1], m[2])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 20 {
		t.Fatalf("found %d quoted commands: the walk missed the sources", seen)
	}
}
