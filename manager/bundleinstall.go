package manager

import (
	"bytes"
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

// bundleProbeTimeout bounds the check whether an installed bundle's
// cluster still answers.
const bundleProbeTimeout = 3 * time.Second

// installInto says whether the CLI bundle goes into dir
// (Config.InstallClientBundle): when dir holds none, or holds the bundle
// of another cluster whose manager no longer answers (an earlier
// cluster, long gone), which is first moved aside to dir.old-CLUSTER and
// logged. A bundle of this cluster, or of a cluster that answers, stays:
// the user may still be using it.
func (m *Manager) installInto(ctx context.Context, dir string, rootPEM []byte) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, ca.RootFile)); errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	root, _, _, err := ca.Dir(dir).Read()
	if err != nil || bytes.Equal(root, rootPEM) {
		return false, nil
	}
	creds, err := ca.Dir(dir).Load()
	if err != nil {
		m.log.Warn("the CLI bundle installed is unreadable; left as it is", "dir", dir, "err", err)
		return false, nil
	}
	addrBytes, _ := os.ReadFile(filepath.Join(dir, "manager-addr"))
	addr, old := strings.TrimSpace(string(addrBytes)), creds.Identity().ClusterID
	if addr != "" && answers(ctx, addr, creds) {
		m.log.Info("the CLI bundle installed is of another cluster, which answers; left as it is (use BERTH_TLS_DIR for this one)",
			"dir", dir, "cluster", old, "addr", addr, "this_bundle", m.path(clientDir))
		return false, nil
	}
	aside := fmt.Sprintf("%s.old-%.12s", dir, old)
	if _, err := os.Stat(aside); err == nil {
		aside = fmt.Sprintf("%s.%d", aside, m.cfg.Now().Unix())
	}
	if err := os.Rename(dir, aside); err != nil {
		return false, fmt.Errorf("move aside the CLI bundle of cluster %s: %w", old, err)
	}
	m.log.Warn("the CLI bundle installed was of a cluster that no longer answers: replaced by this cluster's, the old one kept aside",
		"dir", dir, "old_cluster", old, "old_addr", addr, "kept_in", aside)
	return true, nil
}

// answers says whether a manager of the bundle's cluster answers at addr
// within bundleProbeTimeout: any answer but Unavailable or a deadline.
func answers(ctx context.Context, addr string, creds *ca.Credentials) bool {
	ctx, cancel := context.WithTimeout(ctx, bundleProbeTimeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = pb.NewControlClient(conn).GetCluster(ctx, &pb.GetClusterRequest{}, grpc.WaitForReady(true))
	code := status.Code(err)
	return code != codes.Unavailable && code != codes.DeadlineExceeded && ctx.Err() == nil
}
