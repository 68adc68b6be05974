package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
)

// The files a node keeps at the top of its data directory.
const (
	dataDirLockFile = "LOCK"       // flock(2)ed while a dmsd runs on the directory
	clusterIDFile   = "cluster-id" // the cluster the node's data belongs to
)

// lockDataDir takes the data directory's lock, so that two processes never
// run on one directory; the kernel releases it when the process dies, which
// is also how a restarted node knows its previous run is gone.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, dataDirLockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another dmsd (lock: %w)", dir, err)
	}
	return f, nil
}

// joinCluster makes sure the node's data and etcd belong to the same
// cluster: the first node to start creates the cluster info; a node whose
// data directory remembers another cluster, or whose etcd has lost its
// cluster, refuses to start rather than serve (or delete) data it cannot
// place.
func joinCluster(ctx context.Context, cli *clientv3.Client, dataDir string, fresh *metadatav1.ClusterInfo) (*metadatav1.ClusterInfo, error) {
	path := filepath.Join(dataDir, clusterIDFile)
	kept := ""
	switch data, err := os.ReadFile(path); {
	case err == nil:
		kept = strings.TrimSpace(string(data))
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("cluster id: %w", err)
	}
	value, err := proto.Marshal(fresh)
	if err != nil {
		return nil, err
	}
	get := clientv3.OpGet(placement.ClusterInfoKey)
	var resp *clientv3.TxnResponse
	if kept == "" {
		// Only a node without a cluster may create one.
		resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(placement.ClusterInfoKey), "=", 0)).
			Then(clientv3.OpPut(placement.ClusterInfoKey, string(value)), get).Else(get).Commit()
	} else {
		resp, err = cli.Txn(ctx).Then(get).Commit()
	}
	if err != nil {
		return nil, fmt.Errorf("cluster info: %w", err)
	}
	kvs := resp.Responses[len(resp.Responses)-1].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, fmt.Errorf("this node's data belongs to cluster %s, but etcd (%s) has no cluster: it is another etcd, or its data was lost; "+
			"refusing to start rather than serve data the catalog does not know", kept, strings.Join(cli.Endpoints(), ","))
	}
	info := &metadatav1.ClusterInfo{}
	if err := proto.Unmarshal(kvs[0].Value, info); err != nil {
		return nil, fmt.Errorf("cluster info: %w", err)
	}
	switch {
	case kept == "":
		if err := writeFileDurably(path, info.GetClusterId()+"\n"); err != nil {
			return nil, fmt.Errorf("cluster id: %w", err)
		}
	case kept != info.GetClusterId():
		return nil, fmt.Errorf("this node's data belongs to cluster %s, but etcd (%s) holds cluster %s; point -etcd.endpoints at the node's own cluster",
			kept, strings.Join(cli.Endpoints(), ","), info.GetClusterId())
	}
	return info, nil
}

// newClusterInfo is the info a node would create a cluster with.
func (s *Server) newClusterInfo() *metadatav1.ClusterInfo {
	return &metadatav1.ClusterInfo{
		ClusterId: uuid.NewString(), CreateTimeMs: s.now().UnixMilli(),
		DeliveryShards: int32(max(1, s.cfg.Cluster.DeliveryShards)), SchedulerShards: int32(max(1, s.cfg.Cluster.SchedulerShards)),
	}
}

// takeOverRegistration removes the registration of this node's previous
// run, which is dead (this process holds the data directory's lock), so
// that its leaderships move now instead of when its lease expires.
func (s *Server) takeOverRegistration(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, placement.MemberKey(s.NodeName))
	if err != nil {
		return fmt.Errorf("member registry: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	if old == 0 || old == s.session.Lease() {
		return nil
	}
	s.logger.Info("revoking the lease of this node's previous run", "node", s.NodeName, "lease", fmt.Sprintf("%x", old))
	if _, err := s.cli.Revoke(ctx, old); err != nil && !strings.Contains(err.Error(), "requested lease not found") {
		return fmt.Errorf("revoking the previous run's lease: %w", err)
	}
	return nil
}

func writeFileDurably(path, text string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Dir(path)); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	return err
}
