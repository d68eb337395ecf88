package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
)

// Files of a client bundle, as managers write them to DATA_DIR/client/.
const (
	bundleCA   = "ca.pem"
	bundleCert = "cert.pem"
	bundleKey  = "key.pem"
	// bundleAddr holds the address of the manager that wrote the bundle.
	bundleAddr  = "manager-addr"
	defaultAddr = "127.0.0.1:4242"
)

// tlsDir is where the client bundle is: --tls-dir, $BERTH_TLS_DIR, else ~/.berth.
func (o *globalOpts) tlsDirOrDefault() string {
	if o.tlsDir != "" {
		return o.tlsDir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".berth"
	}
	return filepath.Join(home, ".berth")
}

// addr is the manager to talk to: --host, $BERTH_HOST, the bundle's manager, else localhost.
func (o *globalOpts) addr() string {
	if o.host != "" {
		return o.host
	}
	if b, err := os.ReadFile(filepath.Join(o.tlsDirOrDefault(), bundleAddr)); err == nil {
		if a := strings.TrimSpace(string(b)); a != "" {
			return a
		}
	}
	return defaultAddr
}

// dial connects to a manager with the client certificate bundle.
func (o *globalOpts) dial() (*grpc.ClientConn, error) {
	dir := o.tlsDirOrDefault()
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no client certificate in %s (missing %s): run berth on a manager's host, or copy a manager's DATA_DIR/client/ there and set BERTH_TLS_DIR", dir, name)
		}
		return b, err
	}
	caPEM, err := read(bundleCA)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(bundleCert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(bundleKey)
	if err != nil {
		return nil, err
	}
	creds, err := ca.NewCredentials(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client bundle in %s: %w", dir, err)
	}
	return grpc.NewClient(o.addr(), grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
}

// control runs fn with a Control client and a deadline, and turns gRPC
// errors into messages a person can act on.
func (o *globalOpts) control(ctx context.Context, fn func(context.Context, pb.ControlClient) error) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return o.explain(fn(ctx, pb.NewControlClient(conn)))
}

// edit is control for a read-modify-write of one object: fn reads the
// object, changes its spec and writes it back with the version it read.
// Managers write services and nodes too (addresses, update status), so a
// write refused as out of sequence (Aborted) is tried again from a fresh
// read, a few times: fn must be a function of what it reads alone.
func (o *globalOpts) edit(ctx context.Context, fn func(context.Context, pb.ControlClient) error) error {
	return o.control(ctx, func(ctx context.Context, c pb.ControlClient) error {
		var err error
		for try := 0; try < 5; try++ {
			if err = fn(ctx, c); status.Code(err) != codes.Aborted {
				return err
			}
		}
		return err
	})
}

// stream is control without the deadline, for commands that follow a
// stream until the user interrupts them.
func (o *globalOpts) stream(ctx context.Context, fn func(context.Context, pb.ControlClient) error) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return o.explain(fn(ctx, pb.NewControlClient(conn)))
}

// explain rewrites a gRPC error for the terminal.
func (o *globalOpts) explain(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach a manager at %s%s: %s (is berth-manager running? use --host or BERTH_HOST, or --tls-dir or BERTH_TLS_DIR for another cluster's bundle)", o.addr(), o.bundleNote(), st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("manager at %s did not answer in time: %s", o.addr(), st.Message())
	default:
		return errors.New(st.Message())
	}
}
