package server_test

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// startRaw starts a server on a data directory with flags, without the
// test server's conveniences, and returns the error Start gives.
func startRaw(t *testing.T, dataDir string, args ...string) (*server.Server, error) {
	t.Helper()
	var cfg server.Config
	f := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(f)
	require.NoError(t, f.Parse(append([]string{"-node.data-dir", dataDir, "-node.name", "raw",
		"-server.grpc-addr", "127.0.0.1:0", "-server.http-addr", "127.0.0.1:0", "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0"}, args...)))
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	if err := srv.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(srv.Stop)
	return srv, nil
}

// A node's data belongs to its cluster: started against the etcd of another
// cluster, or against an etcd that lost its cluster, it refuses to start
// (and deletes nothing), and two processes never share a data directory.
func TestNodeRefusesAnotherClustersEtcdAndASharedDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := startRaw(t, dir)
	require.NoError(t, err)
	_, err = startRaw(t, dir)
	require.ErrorContains(t, err, "in use by another dmsd", "a second process on the same data directory")
	first.Stop()

	other := testserver.Start(t)
	_, err = startRaw(t, dir, "-etcd.endpoints", other.EtcdEndpoint)
	require.ErrorContains(t, err, "belongs to cluster")
	require.ErrorContains(t, err, "holds cluster")

	// The same data directory on its own embedded etcd starts again.
	again, err := startRaw(t, dir)
	require.NoError(t, err)
	require.Equal(t, "raw", again.NodeName)
	again.Stop()
	_, err = startRaw(t, dir, "-node.name", "renamed")
	require.ErrorContains(t, err, `belongs to node "raw"`)

	// An embedded etcd that lost its data (the catalog with it).
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "etcd")))
	_, err = startRaw(t, dir)
	require.ErrorContains(t, err, "has no cluster")
}
