package controlapi

import (
	"context"

	"google.golang.org/protobuf/proto"

	"berth/internal/ids"
	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// withoutData is a secret as clients see it: never its data, nor a digest
// of it (which secrets stored by older managers have).
func withoutData(s *pb.Secret) *pb.Secret {
	s = proto.Clone(s).(*pb.Secret)
	if s.Spec != nil {
		s.Spec.Data = nil
	}
	s.Digest = ""
	return s
}

// CreateSecret stores a secret, its data sealed with the cluster key. No
// digest of the data is kept: for a short secret (a password) a digest
// lets anyone who reads it test guesses offline.
func (s *Server) CreateSecret(ctx context.Context, req *pb.CreateSecretRequest) (*pb.CreateSecretResponse, error) {
	spec := proto.Clone(req.GetSpec()).(*pb.SecretSpec)
	if err := validate.SecretSpec(spec); err != nil {
		return nil, toStatus(err)
	}
	sealed, err := s.cfg.SealSecret(spec.GetData())
	if err != nil {
		return nil, toStatus(err)
	}
	spec.Data = sealed
	sec := &pb.Secret{Id: ids.New(), Spec: spec}
	err = s.update(ctx, func(tx store.Tx) error {
		if err := tx.CreateSecret(sec); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.st.View(func(tx store.ReadTx) { sec = tx.GetSecret(sec.GetId()) })
	return &pb.CreateSecretResponse{Secret: withoutData(sec)}, nil
}

// GetSecret finds a secret by ID, name or ID prefix; its data stays hidden.
func (s *Server) GetSecret(ctx context.Context, req *pb.GetSecretRequest) (*pb.GetSecretResponse, error) {
	var sec *pb.Secret
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		sec, err = resolve("secret", req.GetSecretId(), tx.GetSecret, tx.FindSecrets)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetSecretResponse{Secret: withoutData(sec)}, nil
}

// ListSecrets lists secrets by ID, name and label, without their data, a
// page at a time.
func (s *Server) ListSecrets(ctx context.Context, req *pb.ListSecretsRequest) (*pb.ListSecretsResponse, error) {
	secs, next, err := listFiles(ctx, s, req.GetFilters(), req.GetPageToken(),
		func(tx store.ReadTx) ([]*pb.Secret, error) { return tx.FindSecrets(store.All) }, secretAnnotations, withoutData)
	if err != nil {
		return nil, err
	}
	return &pb.ListSecretsResponse{Secrets: secs, NextPageToken: next}, nil
}

// RemoveSecret removes a secret no service uses.
func (s *Server) RemoveSecret(ctx context.Context, req *pb.RemoveSecretRequest) (*pb.RemoveSecretResponse, error) {
	err := s.update(ctx, func(tx store.Tx) error {
		sec, err := resolve("secret", req.GetSecretId(), tx.GetSecret, tx.FindSecrets)
		if err != nil {
			return err
		}
		return removeUnused(tx, "secret", sec, secretAnnotations(sec).GetName(), secretIDs, tx.DeleteSecret)
	})
	if err != nil {
		return nil, err
	}
	return &pb.RemoveSecretResponse{}, nil
}

func secretAnnotations(s *pb.Secret) *pb.Annotations { return s.GetSpec().GetAnnotations() }
