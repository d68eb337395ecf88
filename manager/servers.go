package manager

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"berth/ca"
	"berth/manager/controlapi"
	"berth/manager/dispatcher"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
)

// listen opens the one port this manager serves on; the mux splits it
// between Raft and gRPC.
func (m *Manager) listen() (*mux.Mux, error) {
	ln, err := net.Listen("tcp", m.cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", m.cfg.ListenAddr, err)
	}
	m.listener = ln
	return mux.New(ln, m.id.creds, m.log, mux.AdmitRaft(m.admitRaft)), nil
}

// grpcServer is Run's fourth step: the gRPC services on the shared
// port's gRPC side, each call checked against its caller's role (auth.go).
func (m *Manager) grpcServer() *grpc.Server {
	srv := grpc.NewServer(append(guardOptions(m.log), grpc.Creds(mux.Handshaken()),
		grpc.ChainUnaryInterceptor(m.unaryAuth), grpc.ChainStreamInterceptor(m.streamAuth))...)
	m.gossip = m.newGossip()
	m.dispatcher = m.newDispatcher()
	pb.RegisterNodeCAServer(srv, m.ca)
	m.be.Register(srv)
	pb.RegisterControlServer(srv, m.newControl())
	pb.RegisterDispatcherServer(srv, m.dispatcher)
	return srv
}

// newDispatcher serves agents' sessions; it runs (and owns node
// liveness) while this manager leads.
func (m *Manager) newDispatcher() *dispatcher.Dispatcher {
	return dispatcher.New(dispatcher.Config{
		Store: m.be.Store(), Now: m.cfg.Now, Log: m.log.With("part", "dispatcher"),
		HeartbeatPeriod:    m.heartbeatPeriod,
		Managers:           m.managerPeers,
		IsLeader:           m.be.IsLeader,
		LeaderAddr:         m.be.Leader,
		InsecureRegistries: m.insecureRegistries,
		GossipKeys:         m.gossipKeys,
		GossipPeers:        m.gossip.peers,
		OpenSecret:         func(b []byte) ([]byte, error) { return ca.Open(m.id.clusterKey, b) },
		OnHeartbeat:        m.cfg.OnHeartbeat,
	})
}

// newControl serves the Control API users and the CLI call.
func (m *Manager) newControl() *controlapi.Server {
	return controlapi.New(controlapi.Config{
		Store: m.be.Store(), Reads: m.be.ConsistentRead, Membership: m.be, CanPromote: m.be.CanPromote, ClusterID: m.clusterID,
		NewToken: m.newToken, SealSecret: func(b []byte) ([]byte, error) { return ca.Seal(m.id.clusterKey, b) },
		Agents: m.dispatcher, Leader: m.be.LeaderControl,
		Now: m.cfg.Now, Log: m.log,
	})
}

// serve is Run's last step: it runs the servers and the manager's loops
// until ctx ends or one fails.
func (m *Manager) serve(ctx context.Context, mx *mux.Mux, srv *grpc.Server) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mx.Serve(gctx) })
	g.Go(func() error {
		// Once gctx ends, the mux closing the listener or Stop running
		// before Serve is shutdown, not a failure.
		if err := srv.Serve(mx.GRPCListener()); err != nil && gctx.Err() == nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error { <-gctx.Done(); srv.Stop(); return nil })
	g.Go(func() error { return m.be.RunWhileLeader(gctx, m.leaderLoops) })
	g.Go(func() error { return m.registerSelf(gctx) })
	g.Go(func() error { return m.renewer().Run(gctx) })
	g.Go(func() error { return m.gossip.run(gctx, m.dispatcher) })
	g.Go(func() error { return m.be.Run(gctx) })
	close(m.ready)
	m.log.Info("manager serving", "addr", m.listener.Addr().String(), "advertise", m.advertise, "cluster", m.clusterID)
	return g.Wait()
}
