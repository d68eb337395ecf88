package raftapi

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Peers keeps one connection per other manager, with this manager's
// certificate, and makes the calls a follower needs of the leader.
type Peers struct {
	creds *ca.Credentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPeers returns a connection cache using creds.
func NewPeers(creds *ca.Credentials) *Peers {
	return &Peers{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// Close closes every connection.
func (p *Peers) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

func (p *Peers) client(addr string) (pb.RaftMembershipClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewRaftMembershipClient(c), nil
}

// Control returns a client of the Control API of the manager at addr,
// calling with this manager's certificate.
func (p *Peers) Control(addr string) (pb.ControlClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewControlClient(c), nil
}

func (p *Peers) conn(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("cluster has no leader: %w", store.ErrNotLeader)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.conns[addr]
	if !ok {
		var err error
		c, err = grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.creds.ClientConfig())))
		if err != nil {
			return nil, err
		}
		p.conns[addr] = c
	}
	return c, nil
}

// Forward has the leader at addr commit a batch and returns its index.
// It fits raftstore.Config.Forward.
func (p *Peers) Forward(ctx context.Context, addr string, b *pb.StoreBatch) (uint64, error) {
	c, err := p.client(addr)
	if err != nil {
		return 0, err
	}
	resp, err := c.Propose(ctx, &pb.ProposeRequest{Batch: b})
	if err != nil {
		if status.Code(err) == codes.Unavailable && !isNotLeader(err) {
			// The request may have reached the leader before the
			// connection broke: its fate is unknown.
			return 0, fmt.Errorf("forward to the leader at %s: %v: %w", addr, err, store.ErrOutcomeUnknown)
		}
		return 0, fromStatus(err)
	}
	return resp.GetIndex(), nil
}

// ReadIndex asks the leader at addr for a read index.
func (p *Peers) ReadIndex(ctx context.Context, addr string) (uint64, error) {
	c, err := p.client(addr)
	if err != nil {
		return 0, err
	}
	resp, err := c.Barrier(ctx, &pb.BarrierRequest{})
	if err != nil {
		return 0, fromStatus(err)
	}
	return resp.GetIndex(), nil
}

// Join asks the manager at addr (any; it forwards to the leader) to add
// this manager as a voter.
func (p *Peers) Join(ctx context.Context, addr string, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	c, err := p.client(addr)
	if err != nil {
		return nil, err
	}
	return c.Join(ctx, req)
}

// Leave asks the leader at addr to remove manager id from the Raft
// cluster; the leader refuses (and says why) a removal that would lose
// quorum or the last manager.
func (p *Peers) Leave(ctx context.Context, addr, id string) error {
	c, err := p.client(addr)
	if err != nil {
		return err
	}
	if _, err := c.Leave(ctx, &pb.LeaveRequest{NodeId: id}); err != nil {
		return fromStatus(err)
	}
	return nil
}

func (p *Peers) forwardJoin(ctx context.Context, leader string, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	c, err := p.client(leader)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return c.Join(ctx, req)
}

func (p *Peers) forwardLeave(ctx context.Context, leader string, req *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	c, err := p.client(leader)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return c.Leave(ctx, req)
}

func isNotLeader(err error) bool {
	st, _ := status.FromError(err)
	return st != nil && strings.Contains(st.Message(), store.ErrNotLeader.Error())
}
