package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"berth/agent"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// berth-agent run --network puts the container on attachable overlay
// networks through the node's daemon (agent.LocalSocket in the data dir),
// which owns the node's overlay and its session with the managers: the
// daemon wires the container's namespace in the pre-start hook, before
// the user process runs, and takes it off when the container ends.

// netDir holds, per container of berth-agent run on networks, its
// resolv.conf and what its attachment answered (for inspect).
const netDir = "run-net"

// attachTimeout bounds the daemon's attach (the managers allocate the
// addresses, the node builds the networks).
const attachTimeout = time.Minute

// netRun is one container's place on the networks of --network.
type netRun struct {
	client   pb.LocalAgentClient
	dir      string // DATA/run-net
	id       string
	networks []*pb.NetworkAttachment
	stderr   io.Writer
	// refused is the daemon's (or the managers') refusal, as it came.
	refused error
}

// networks are --network's targets, each with every --network-alias.
func (o *runOptions) networks() []*pb.NetworkAttachment {
	var out []*pb.NetworkAttachment
	for _, n := range o.nets {
		out = append(out, &pb.NetworkAttachment{Target: n, Aliases: o.aliases})
	}
	return out
}

// dialDaemon connects to the node daemon of dataDir, refusing at once
// when none serves there.
func dialDaemon(dataDir string) (*grpc.ClientConn, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dataDir, agent.LocalSocket)
	notRunning := fmt.Errorf("--network needs the node's berth-agent daemon: no socket at %s; start berth-agent with --data-dir %s, or run without --network", sock, dataDir)
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, notRunning
		}
		return nil, fmt.Errorf("--network needs the node's berth-agent daemon, which does not answer on %s (%v); start berth-agent with --data-dir %s, or run without --network", sock, err, dataDir)
	}
	c.Close()
	return grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// newNetRun prepares container id's --network over conn, the daemon's
// (dialDaemon; the caller closes it), and makes the resolv.conf the
// container mounts (filled once attached).
func newNetRun(conn *grpc.ClientConn, dataDir, id string, networks []*pb.NetworkAttachment, stderr io.Writer) (*netRun, error) {
	n := &netRun{client: pb.NewLocalAgentClient(conn), dir: filepath.Join(dataDir, netDir), id: id, networks: networks, stderr: stderr}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, fmt.Errorf("--network: %w", err)
	}
	if err := os.WriteFile(n.resolvFile(), []byte("# berth: filled once the container is on its networks\n"), 0o644); err != nil {
		return nil, fmt.Errorf("--network: %w", err)
	}
	return n, nil
}

func (n *netRun) resolvFile() string { return filepath.Join(n.dir, n.id+".resolv.conf") }
func (n *netRun) infoFile() string   { return filepath.Join(n.dir, n.id+".json") }

// mount is the container's /etc/resolv.conf, read-only as tasks' are.
func (n *netRun) mount() runtime.Mount {
	return runtime.Mount{Type: runtime.MountBind, Source: n.resolvFile(), Target: "/etc/resolv.conf", ReadOnly: true}
}

// preStart is the container's pre-start hook: the daemon puts the
// namespace of the init (pid) on the networks; the resolv.conf names the
// networks' DNS servers.
func (n *netRun) preStart(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	resp, err := n.client.AttachContainer(ctx, &pb.AttachContainerRequest{ContainerId: n.id, Pid: int64(pid), Networks: n.networks})
	if err != nil {
		n.refused = fmt.Errorf("--network: %s", status.Convert(err).Message())
		return n.refused
	}
	if err := n.written(resp); err != nil {
		n.detach(ctx)
		return fmt.Errorf("--network: %w", err)
	}
	return nil
}

// written fills the resolv.conf and records the attachment for inspect.
func (n *netRun) written(resp *pb.AttachContainerResponse) error {
	var b strings.Builder
	b.WriteString("# berth: the node's DNS server for this container's networks\n")
	for _, s := range resp.GetNameservers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if err := os.WriteFile(n.resolvFile(), []byte(b.String()), 0o644); err != nil {
		return err
	}
	info, err := json.Marshal(netInfoOf(resp))
	if err != nil {
		return err
	}
	return os.WriteFile(n.infoFile(), info, 0o600)
}

// detach takes the container off its networks now (its end, or a failed
// start); the daemon's watch would, a moment later.
func (n *netRun) detach(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := n.client.DetachContainer(ctx, &pb.DetachContainerRequest{ContainerId: n.id}); err != nil {
		fmt.Fprintf(n.stderr, "berth-agent: take %s off its networks: %s (the node's daemon ends it when it sees the container gone)\n", n.id, status.Convert(err).Message())
	}
}

// removeNetFiles deletes container id's resolv.conf and attachment record.
func removeNetFiles(dataDir, id string) {
	for _, f := range []string{id + ".resolv.conf", id + ".json"} {
		_ = os.Remove(filepath.Join(dataDir, netDir, f))
	}
}

// netInfo is a container's networks as inspect shows them.
type netInfo struct {
	Attachment string       `json:"attachment"`
	Networks   []netAddress `json:"networks"`
	DNS        []string     `json:"dns,omitempty"`
}

type netAddress struct {
	Network   string   `json:"network"`
	Addresses []string `json:"addresses"`
	Aliases   []string `json:"aliases,omitempty"`
}

func netInfoOf(resp *pb.AttachContainerResponse) netInfo {
	in := netInfo{Attachment: resp.GetAttachmentId(), DNS: resp.GetNameservers()}
	for _, a := range resp.GetNetworks() {
		in.Networks = append(in.Networks, netAddress{Network: a.GetNetworkId(), Addresses: a.GetAddresses(), Aliases: a.GetAliases()})
	}
	return in
}

// readNetInfo is container id's networks, nil when it has none.
func readNetInfo(dataDir, id string) *netInfo {
	data, err := os.ReadFile(filepath.Join(dataDir, netDir, id+".json"))
	if err != nil {
		return nil
	}
	var in netInfo
	if json.Unmarshal(data, &in) != nil {
		return nil
	}
	return &in
}
