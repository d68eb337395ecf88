package controlapi

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"berth/internal/ids"
	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// CreateConfig stores a config. Its data is kept as given: configs are
// not secret, and the Control API returns them.
func (s *Server) CreateConfig(ctx context.Context, req *pb.CreateConfigRequest) (*pb.CreateConfigResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*pb.ConfigSpec)
	if err := validate.ConfigSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	cfg := &pb.Config{Id: ids.New(), Spec: spec}
	if err := s.update(ctx, func(tx store.Tx) error { return tx.CreateConfig(cfg) }); err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { cfg = tx.GetConfig(cfg.GetId()) })
	return &pb.CreateConfigResponse{Config: cfg}, nil
}

// GetConfig finds a config by ID, name or ID prefix, data included.
func (s *Server) GetConfig(ctx context.Context, req *pb.GetConfigRequest) (*pb.GetConfigResponse, error) {
	var cfg *pb.Config
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		cfg, err = resolve("config", req.GetConfigId(), tx.GetConfig, tx.FindConfigs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetConfigResponse{Config: cfg}, nil
}

// ListConfigs lists configs by ID, name and label, data included, a page
// at a time (a config may be 1000 KiB: a page holds what fits its budget).
func (s *Server) ListConfigs(ctx context.Context, req *pb.ListConfigsRequest) (*pb.ListConfigsResponse, error) {
	cfgs, next, err := listFiles(ctx, s, req.GetFilters(), req.GetPageToken(),
		func(tx store.ReadTx) ([]*pb.Config, error) { return tx.FindConfigs(store.All) }, configAnnotations, same[*pb.Config])
	if err != nil {
		return nil, err
	}
	return &pb.ListConfigsResponse{Configs: cfgs, NextPageToken: next}, nil
}

// RemoveConfig removes a config no service uses.
func (s *Server) RemoveConfig(ctx context.Context, req *pb.RemoveConfigRequest) (*pb.RemoveConfigResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		cfg, err := resolve("config", req.GetConfigId(), tx.GetConfig, tx.FindConfigs)
		if err != nil {
			return err
		}
		return removeUnused(tx, "config", cfg, configAnnotations(cfg).GetName(), configIDs, tx.DeleteConfig)
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveConfigResponse{}, nil
}

func configAnnotations(c *pb.Config) *pb.Annotations { return c.GetSpec().GetAnnotations() }

// checkConfigRefs resolves the configs a container names, filling in
// their IDs and names, and keeps each target in its absolute form.
func checkConfigRefs(tx store.ReadTx, c *pb.ContainerSpec) error {
	for i, ref := range c.GetConfigs() {
		cfg, err := resolveRef("config", i, ref.GetConfigName(), ref.GetConfigId(), tx.GetConfig, tx.FindConfigs)
		if err != nil {
			return err
		}
		ref.ConfigId, ref.ConfigName = cfg.GetId(), cfg.GetSpec().GetAnnotations().GetName()
		if ref.FileName, err = validate.ConfigTarget(fmt.Sprintf("configs[%d].target", i), ref); err != nil {
			return err
		}
	}
	return nil
}
