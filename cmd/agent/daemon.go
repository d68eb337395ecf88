package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"berth/agent"
	"berth/agent/promote"
	"berth/internal/metrics"
	"berth/manager/telemetry"
	pb "berth/proto/berth/v1"
)

// runDaemon runs the node daemon until ctx ends: the agent, once a
// session hands it the cluster's key a gossip member, and once the node is
// promoted a manager (agent/promote).
func runDaemon(ctx context.Context, o *options, log *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	listen, advertise, err := promote.Addrs(o.managerListen, o.advertiseAddr)
	if err != nil {
		return fmt.Errorf("--manager-listen-addr: %w", err)
	}
	labels := map[string]string{}
	for _, l := range o.labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	maxSize, maxEntries, err := o.layers.config()
	if err != nil {
		return err
	}
	ep, err := metrics.Open(o.metricsAddr, log)
	if err != nil {
		return err
	}
	defer ep.Close()
	var tm *telemetry.Metrics // the manager's, once the node is promoted; nil: metrics off
	if ep != nil {
		tm = telemetry.New(ep.Registry)
	}
	// The parts know each other through funcs that are first called once
	// the agent runs, by when all three exist.
	var a *agent.Agent
	var part *promote.Part
	g := agent.NewGossip(agent.GossipConfig{BindAddr: o.advertiseAddr, Port: o.gossipPort, NodeID: func() string { return a.NodeID() }, Log: log})
	defer g.Shutdown()
	a, err = agent.New(agent.Config{
		DataDir: dataDir, Join: o.join, Token: o.token, AdvertiseAddr: o.advertiseAddr, Overlay: o.overlay, ResolvConf: o.resolvConf,
		Hostname: o.hostname, Labels: labels, InsecureRegistries: o.insecureRegs, CgroupParent: o.cgroupParent, Logger: log,
		MaxLayerSize: maxSize, MaxLayerEntries: maxEntries,
		OnGossip:      func(key []byte, accept [][]byte, peers []string) { g.Update(ctx, key, accept, peers) },
		OnDesiredRole: func(role pb.NodeSpec_Role) { part.Want(role) }, Metrics: ep.Registerer(),
	})
	if err != nil {
		return err
	}
	part = promote.New(promote.Config{
		Dir: filepath.Join(dataDir, "manager"), ListenAddr: listen, AdvertiseAddr: advertise,
		InsecureRegistries: o.insecureRegs, Issuer: a, Gossip: g.Member, Log: log,
		Metrics: tm,
	})
	eg, ectx := errgroup.WithContext(ctx)
	ectx, cancel := context.WithCancel(ectx)
	eg.Go(func() error { defer cancel(); return a.Run(ectx) })
	eg.Go(func() error { return part.Run(ectx) })
	eg.Go(func() error { return ep.Run(ectx) })
	err = eg.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}
