package raftstore

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// TCPStreamLayer is a plain-TCP raft.StreamLayer, for tests on loopback.
// Managers use a layer wrapped in mutual TLS instead.
type TCPStreamLayer struct {
	net.Listener
}

// ListenTCP listens on addr (e.g. "127.0.0.1:0"); Addr reports the port.
func ListenTCP(addr string) (*TCPStreamLayer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	return &TCPStreamLayer{Listener: l}, nil
}

// Dial connects to a peer's raft address.
func (t *TCPStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
