package storage

import (
	"io"
	"os"
	"path/filepath"
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
	"github.com/opendms/dms/services/storage/partitionlog"
)

// A queue's logs are sealed with its project's data key, the audit trail
// with the master key; a rotation reaches the open log at once, everything
// stays readable across it and a restart, and the offline check, which has
// only the master keys, checks the data-key batches by CRC without
// reporting them.
func TestEngineSealsWithProjectKeys(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "tenant", DisplayName: "q", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, RetentionMs: 3600_000}
	v, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(v))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	cfg := testConfig(t.TempDir())
	cfg.EncryptionKeyFile = writeKeyFile(t, keyEntry(1, 1))
	ring, err := LoadKeyring(cfg, quietLogger())
	require.NoError(t, err)
	dk := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(ring), time.Now, quietLogger())
	start := func() *Engine {
		e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
		require.NoError(t, err)
		e.dk = dk
		dk.Subscribe(e.onDataKeysChanged)
		return e
	}
	e := start()
	part := logid.Partition(q.GetId(), 0)
	appendOne := func(e *Engine, id logid.ID, data string) {
		_, err := e.Append(ctx, &storagev1.AppendRequest{Log: id, Records: []*storagev1.Record{{TimestampMs: 1, Payload: []byte(data)}}})
		require.NoError(t, err)
	}
	appendOne(e, part, "first")
	appendOne(e, logid.Audit(), "audit record")
	active := func(e *Engine, id logid.ID) uint32 {
		k, _ := e.logs[logid.Key(id)].Keys().Active()
		return k
	}
	require.Equal(t, datakeys.FirstKeyID+1, active(e, part))
	require.Equal(t, uint32(1), active(e, logid.Audit()))

	_, err = dk.Rotate(ctx, "tenant")
	require.NoError(t, err)
	require.Equal(t, datakeys.FirstKeyID+2, active(e, part), "the open log seals with the rotated key")
	appendOne(e, part, "second")
	read := func(e *Engine) []string {
		res, err := e.Read(ctx, part, 0, ReadOptions{MaxBytes: 1 << 20})
		require.NoError(t, err)
		var out []string
		for _, r := range res.Records {
			out = append(out, string(r.GetRecord().GetPayload()))
		}
		return out
	}
	require.Equal(t, []string{"first", "second"}, read(e))
	require.NoError(t, e.Close())

	e = start()
	require.Equal(t, []string{"first", "second"}, read(e))
	require.NoError(t, e.Close())

	problems, err := CheckDataDir(cfg.Dir, ring, io.Discard)
	require.NoError(t, err)
	require.Zero(t, problems)
	// The check still authenticates what the master key sealed: a master
	// key of the right id but the wrong bytes is caught on the audit trail.
	wrong, err := partitionlog.NewKeyring(partitionlog.Key{ID: 1, Secret: make([]byte, 32)})
	require.NoError(t, err)
	_, err = CheckDataDir(cfg.Dir, wrong, io.Discard)
	require.ErrorIs(t, err, partitionlog.ErrEncryptionKey)
	_, err = os.Stat(filepath.Join(cfg.Dir, "q", q.GetId(), "0"))
	require.NoError(t, err)
}

// A node that has not heard of a rotation yet (its watch lags) and meets a
// batch sealed with the new key, written by another node, rereads the
// project's keys instead of failing.
func TestEngineRereadsKeysItHasNotHeardOf(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "tenant", DisplayName: "q", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, RetentionMs: 3600_000}
	v, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(v))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	cfg := testConfig(t.TempDir())
	cfg.EncryptionKeyFile = writeKeyFile(t, keyEntry(1, 1))
	ring, err := LoadKeyring(cfg, quietLogger())
	require.NoError(t, err)
	// Neither manager watches: each knows only what it read or wrote.
	lagging := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(ring), time.Now, quietLogger())
	other := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(ring), time.Now, quietLogger())
	start := func(dk *datakeys.Manager) *Engine {
		e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
		require.NoError(t, err)
		e.dk = dk
		dk.Subscribe(e.onDataKeysChanged)
		return e
	}
	part := logid.Partition(q.GetId(), 0)
	write := func(dk *datakeys.Manager, data string) {
		e := start(dk)
		_, err := e.Append(ctx, &storagev1.AppendRequest{Log: part, Records: []*storagev1.Record{{TimestampMs: 1, Payload: []byte(data)}}})
		require.NoError(t, err)
		require.NoError(t, e.Close())
	}
	write(lagging, "first")
	_, err = other.Rotate(ctx, "tenant")
	require.NoError(t, err)
	write(other, "second") // sealed with the rotated key

	e := start(lagging)
	defer e.Close()
	res, err := e.Read(ctx, part, 0, ReadOptions{MaxBytes: 1 << 20})
	require.NoError(t, err)
	require.Len(t, res.Records, 2)
	require.Equal(t, "second", string(res.Records[1].GetRecord().GetPayload()))
}
