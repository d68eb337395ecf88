// Command demo is `make demo`: it brings up a real berth cluster on test
// hosts (3 managers and 2 agents, each in a network namespace of its own),
// deploys the demo app as a global service publishing port 8080 on every
// agent, checks that it answers, prints what to try, and tears everything
// down on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"berth/internal/e2ecluster"
	"berth/internal/testhost"
)

func main() {
	bin := flag.String("bin", "bin", "directory with berth, berth-manager and berth-agent")
	dir := flag.String("dir", "demo-data", "directory for the nodes' data and logs")
	managers := flag.Int("managers", 3, "number of managers")
	agents := flag.Int("agents", 2, "number of agents")
	down := flag.Bool("down", false, "remove what a demo killed without Ctrl-C left behind, and exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if *down {
		err = cleanup(ctx, *dir)
	} else {
		giveBack := takeTerminal()
		err = run(ctx, *bin, *dir, *managers, *agents)
		giveBack()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, dir string, managers, agents int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	bins, err := binsIn(bin)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	say("bringing up %d managers and %d agents, each on its own test host (network namespace)", managers, agents)
	c, err := e2ecluster.Up(ctx, e2ecluster.Options{Managers: managers, Agents: agents, Bins: bins, Dir: abs, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		say("tearing down: stopping every node, removing hosts")
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: teardown:", err)
		}
	}()
	out, err := c.CLI(ctx, "node", "ls")
	if err != nil {
		return err
	}
	fmt.Print(out)

	say("deploying the demo app (global service, port 8080 published on every agent)")
	if out, err = c.CLI(ctx, "service", "create", "--name", "web", "--mode", "global",
		"--publish", "mode=host,published=8080,target=8080", c.Images.AppV1.Tag); err != nil {
		return err
	}
	fmt.Print(out)
	if out, err = c.CLI(ctx, "service", "ps", "web"); err != nil {
		return err
	}
	fmt.Print(out)

	var urls []string
	for _, a := range c.Agents {
		url := fmt.Sprintf("http://%s:8080/", a.Host.Addr)
		body, err := get(ctx, url)
		if err != nil {
			return err
		}
		say("curl %s → %s", url, strings.TrimSpace(body))
		urls = append(urls, url)
	}
	m := c.Managers[0]
	fmt.Printf(`
The cluster is up. In another shell, as root:

  export BERTH_TLS_DIR=%[1]s BERTH_HOST=%[2]s
  alias berth=%[3]s
  berth node ls
  berth service ps web
  curl %[4]s
  berth service create --name sleepers --replicas 4 %[5]s sleep 3600
  berth service scale sleepers=8
  berth node update --availability drain <NODE>      # its tasks move to the other agent
  berth service rm sleepers

Node logs are in %[6]s/*.log. Press Ctrl-C here to tear everything down.
`, filepath.Join(m.DataDir, "client"), m.Addr(), bins.CLI, urls[0], c.Images.Busybox.Tag, abs)
	<-ctx.Done()
	return nil
}

// cleanup sweeps the test hosts of dead runs (killing the nodes left in
// them), deletes the containers the agents left running and their mounts,
// and removes the demo's data dir.
func cleanup(ctx context.Context, dir string) error {
	if err := testhost.Sweep(ctx, nil); err != nil {
		return err
	}
	agents, _ := filepath.Glob(filepath.Join(dir, "a*"))
	for _, a := range agents {
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			if err := e2ecluster.CleanupAgent(a); err != nil {
				return err
			}
		}
	}
	say("removed what the demo left behind")
	return os.RemoveAll(dir)
}

func binsIn(dir string) (e2ecluster.Bins, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return e2ecluster.Bins{}, err
	}
	b := e2ecluster.Bins{CLI: filepath.Join(abs, "berth"), Manager: filepath.Join(abs, "berth-manager"), Agent: filepath.Join(abs, "berth-agent")}
	for _, p := range []string{b.CLI, b.Manager, b.Agent} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%s missing: run `make build` first", p)
		}
	}
	return b, nil
}

// get fetches url, retrying for a while: the tasks may still be starting.
func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		body, err := e2ecluster.Get(ctx, url)
		if err == nil {
			return body, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("GET %s: %v", url, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }
