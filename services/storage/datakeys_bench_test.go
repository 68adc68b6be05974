package storage

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/storage/logid"
)

// BenchmarkAppendEncryption is the storage side of the send path (Engine.
// Append of one 1 KiB record per call, fsynced, from 32 appenders) with
// encryption at rest off, with the master key sealing every batch (as
// before per-project keys), and with each project's data key. Run the three
// in one go to compare on the same machine state:
//
//	go test -run '^$' -bench BenchmarkAppendEncryption -benchtime 5s ./services/storage/
func BenchmarkAppendEncryption(b *testing.B) {
	cli := startEtcd(b)
	ctx := b.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "bench", DisplayName: "bench", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, RetentionMs: 3600_000}
	v, err := proto.Marshal(q)
	require.NoError(b, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(v))
	require.NoError(b, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(b, cache.Start(ctx))
	keyFile := writeKeyFile(b, keyEntry(1, 1))
	for _, mode := range []string{"off", "master-key", "project-key"} {
		b.Run(mode, func(b *testing.B) {
			cfg := testConfig(b.TempDir())
			if mode != "off" {
				cfg.EncryptionKeyFile = keyFile
			}
			e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
			require.NoError(b, err)
			defer e.Close()
			if mode == "project-key" {
				ring, err := LoadKeyring(cfg, quietLogger())
				require.NoError(b, err)
				e.dk = datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(ring), time.Now, quietLogger())
				e.dk.Subscribe(e.onDataKeysChanged)
			}
			req := &storagev1.AppendRequest{Log: logid.Partition(q.GetId(), 0), Records: []*storagev1.Record{{TimestampMs: 1, Payload: []byte(strings.Repeat("x", 1024))}}}
			// The first append opens the log (and makes the project's key).
			_, err = e.Append(ctx, req)
			require.NoError(b, err)
			l := e.logs[logid.Key(req.GetLog())]
			if mode == "project-key" {
				id, _ := l.Log.Keys().Active()
				require.GreaterOrEqual(b, id, datakeys.FirstKeyID, "sealed with the project's key")
			}
			b.SetParallelism(32)
			b.SetBytes(1024)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Append(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
