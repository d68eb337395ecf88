package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// LocalSocket is the name of the daemon's LocalAgent socket in its data
// dir: berth-agent run finds the daemon there.
const LocalSocket = "agent.sock"

// managerRetry bounds how long a call to the managers waits out a
// missing session or a leader change before it fails.
const managerRetry = 15 * time.Second

// localAPI serves LocalAgent to the berth-agent commands of this host.
type localAPI struct {
	pb.UnimplementedLocalAgentServer
	att *attachments
}

func (s *localAPI) AttachContainer(ctx context.Context, req *pb.AttachContainerRequest) (*pb.AttachContainerResponse, error) {
	return s.att.attach(ctx, req)
}

func (s *localAPI) DetachContainer(ctx context.Context, req *pb.DetachContainerRequest) (*pb.DetachContainerResponse, error) {
	return &pb.DetachContainerResponse{}, s.att.detach(ctx, req.GetContainerId())
}

// serveLocal serves LocalAgent on the unix socket at path until ctx ends,
// then removes the socket. The socket is root's alone (mode 0600): its
// caller puts containers on the cluster's networks. A socket an earlier
// daemon left is replaced.
func serveLocal(ctx context.Context, path string, api *localAPI) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	defer os.Remove(path)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("local API: %w", err)
	}
	srv := grpc.NewServer()
	pb.RegisterLocalAgentServer(srv, api)
	stop := context.AfterFunc(ctx, srv.Stop)
	defer stop()
	if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
		return fmt.Errorf("local API: %w", err)
	}
	return nil
}

// localSocket is the daemon's LocalAgent socket under its data dir.
func (a *Agent) localSocket() string { return filepath.Join(a.cfg.DataDir, LocalSocket) }

// AttachNetwork asks the managers for an attachment (Dispatcher.AttachNetwork).
func (a *Agent) AttachNetwork(ctx context.Context, req *pb.AttachNetworkRequest) (*pb.Task, error) {
	var t *pb.Task
	err := a.withManager(ctx, func(ctx context.Context, c pb.DispatcherClient) error {
		resp, err := c.AttachNetwork(ctx, req)
		t = resp.GetTask()
		return err
	})
	if err == nil && t.GetId() == "" {
		return nil, status.Error(codes.Internal, "the managers answered AttachNetwork with no attachment task")
	}
	return t, err
}

// DetachNetwork ends an attachment (Dispatcher.DetachNetwork).
func (a *Agent) DetachNetwork(ctx context.Context, id string) error {
	return a.withManager(ctx, func(ctx context.Context, c pb.DispatcherClient) error {
		_, err := c.DetachNetwork(ctx, &pb.DetachNetworkRequest{AttachmentId: id})
		return err
	})
}

// withManager calls f with the session's manager, waiting out a missing
// session and a leader change (Unavailable) for up to managerRetry. The
// managers' refusals come back as they are.
func (a *Agent) withManager(ctx context.Context, f func(context.Context, pb.DispatcherClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, managerRetry)
	defer cancel()
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for {
		err := errNoSession
		if c, _, ok := a.link.get(); ok {
			err = f(ctx, c)
		}
		if err == nil || (err != errNoSession && !transient(err)) {
			return err
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.Unavailable, "no manager answered within %s: %v", managerRetry, err)
		case <-time.After(b.next()):
		}
	}
}

// transient says a call may succeed when tried again: the manager is
// going or not the leader yet.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}
