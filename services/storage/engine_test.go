package storage

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testConfig(dir string) Config {
	return Config{Dir: dir, SegmentBytes: 64 << 20, AsyncFlush: 200 * time.Millisecond, RetentionInterval: time.Hour}
}

func keyEntry(id uint32, seed byte) string {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = seed ^ byte(i*13)
	}
	return fmt.Sprintf("%d:%s", id, base64.StdEncoding.EncodeToString(secret))
}

func writeKeyFile(t testing.TB, entries ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(entries, "\n")+"\n"), 0o600))
	return p
}

// TestEngineEncryptionKeys: the engine refuses to start with keys that are
// malformed, given twice, or missing or different from those that encrypted
// the data in its directory; each case says what is wrong.
func TestEngineEncryptionKeys(t *testing.T) {
	cache := catalog.NewCache(nil, quietLogger()) // only subscribed to here
	newEngine := func(cfg Config) error {
		e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
		if err == nil {
			require.NoError(t, e.Close())
		}
		return err
	}
	dir := t.TempDir()
	cfg := testConfig(dir)

	// Off by default.
	require.NoError(t, newEngine(cfg))

	// Malformed keys and keys given twice.
	bad := cfg
	bad.EncryptionKeyFile = writeKeyFile(t, "1:"+base64.StdEncoding.EncodeToString(make([]byte, 16)))
	err := newEngine(bad)
	require.ErrorIs(t, err, partitionlog.ErrInvalidKeyring)
	require.ErrorContains(t, err, "key id 1 is 16 bytes long, want 32")
	bad.EncryptionKeyFile = filepath.Join(t.TempDir(), "absent")
	require.ErrorIs(t, newEngine(bad), os.ErrNotExist)
	t.Setenv(keysEnv, keyEntry(1, 1))
	bad.EncryptionKeyFile = writeKeyFile(t, keyEntry(1, 1))
	require.ErrorContains(t, newEngine(bad), "encryption keys given twice")

	// Turned on through the environment: key 1's fingerprint is recorded.
	require.NoError(t, newEngine(cfg))
	t.Setenv(keysEnv, "")

	for _, tc := range []struct {
		name string
		file []string // nil: no keys
		want string
	}{
		{"no keys", nil, "data in " + dir + " is encrypted (key ids [1]) but no encryption keys are given"},
		{"key missing", []string{keyEntry(2, 2)}, "key id 1 encrypted data in " + dir + " but is missing"},
		{"wrong key", []string{keyEntry(1, 9)}, "key id 1 given is not the key that encrypted data in " + dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.file != nil {
				c.EncryptionKeyFile = writeKeyFile(t, tc.file...)
			}
			require.ErrorContains(t, newEngine(c), tc.want)
		})
	}

	// Rotation: the old key stays, a new active key is recorded.
	rotated := cfg
	rotated.EncryptionKeyFile = writeKeyFile(t, keyEntry(1, 1), keyEntry(2, 2))
	require.NoError(t, newEngine(rotated))
	fps, err := readFingerprints(filepath.Join(dir, fingerprintFileName))
	require.NoError(t, err)
	require.Len(t, fps, 2)
	rotated.EncryptionKeyFile = writeKeyFile(t, keyEntry(2, 2))
	require.ErrorContains(t, newEngine(rotated), "key id 1 encrypted data")
}

func TestDescribeLogAndStorageFull(t *testing.T) {
	q := "0b7e1f5c-5a4e-4b8e-9f0e-1c2d3e4f5a6b"
	g := "g-" + q
	require.Equal(t, "queue "+q+" partition 3", logid.Describe(logid.Partition(q, 3)))
	require.Equal(t, "delivery state of group "+g+" of queue "+q, logid.Describe(logid.GroupState(q, g)))

	// What partitionlog returns on a full disk maps to STORAGE_FULL.
	full := fmt.Errorf("partitionlog: append to x.log: %w", &os.PathError{Op: "write", Path: "x.log", Err: syscall.ENOSPC})
	err := appendError(logid.Partition(q, 3), full)
	require.ErrorIs(t, err, errs.ErrStorageFull)
	require.ErrorContains(t, err, "queue "+q+" partition 3")
}

// startEtcd runs an embedded etcd for the catalog the engine reads.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "storage-test"
	cfg.Dir = filepath.Join(t.TempDir(), "etcd")
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}, url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestEngineReadCorruptMiddleSegment: a damaged batch in an older segment of
// a queue partition is reported by Engine.Read as a lost range after
// everything before it has been returned, and the data after it stays
// readable. With encryption on, a batch whose CRC was fixed up but fails
// authentication (tampering) is refused, without server paths.
func TestEngineReadCorruptMiddleSegment(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "p", DisplayName: "orders", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 4, RetentionMs: 3600_000}
	b, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(b))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))

	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "encrypted"}[encrypted], func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.SegmentBytes = 4096
			if encrypted {
				cfg.EncryptionKeyFile = writeKeyFile(t, keyEntry(5, 5))
			}
			e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
			require.NoError(t, err)
			defer e.Close()
			log := logid.Partition(q.GetId(), 2)
			for i := range 100 {
				_, err := e.Append(ctx, &storagev1.AppendRequest{Log: log, Records: []*storagev1.Record{{TimestampMs: int64(i), MessageId: fmt.Sprint(i), Payload: make([]byte, 100)}}})
				require.NoError(t, err)
			}
			dir := filepath.Join(cfg.Dir, filepath.FromSlash(logid.Dir(log)))
			segs, err := filepath.Glob(filepath.Join(dir, "*.log"))
			require.NoError(t, err)
			slices.Sort(segs)
			require.Greater(t, len(segs), 3)

			// Damage the middle of the second segment, on disk, under the
			// open log. For the encrypted log, the CRC is fixed up so that
			// only the authentication tag can tell.
			middle := segs[1]
			data, err := os.ReadFile(middle)
			require.NoError(t, err)
			starts := batchStarts(t, data)
			data[starts[len(starts)/2]+60] ^= 0x20 // a payload byte: past the header (55 bytes if encrypted)
			if encrypted {
				data = fixCRCs(t, data)
			}
			require.NoError(t, os.WriteFile(middle, data, 0o644))

			var got []int64
			var readErr error
			var lost *storagev1.LostRange
			for from := int64(0); ; {
				res, err := e.Read(ctx, log, from, ReadOptions{MaxBytes: 1 << 20})
				if err != nil {
					readErr = err
					break
				}
				if res.Lost != nil {
					lost = res.Lost
					break
				}
				require.NotEmpty(t, res.Records)
				for _, r := range res.Records {
					got = append(got, r.GetOffset())
				}
				from = got[len(got)-1] + 1
			}
			first := int64(len(got)) // offsets 0..first-1 were returned
			if !encrypted {
				// Plain damage: the reader is told which offsets are lost
				// and reads on after them.
				require.NoError(t, readErr)
				require.NotNil(t, lost)
				require.Equal(t, first, lost.GetFirstOffset())
				res, err := e.Read(ctx, log, lost.GetLastOffset()+1, ReadOptions{MaxBytes: 1 << 20})
				require.NoError(t, err)
				require.Equal(t, lost.GetLastOffset()+1, res.Records[0].GetOffset())
			} else {
				// Data that does not authenticate is refused, and the client
				// learns the log and offset but no server path.
				require.Nil(t, lost)
				require.ErrorIs(t, readErr, errs.ErrInternal)
				msg := readErr.Error()
				t.Log(msg)
				require.Contains(t, msg, "queue "+q.GetId()+" partition 2")
				require.Contains(t, msg, fmt.Sprintf("offset %d", first))
				require.NotContains(t, msg, cfg.Dir)
				require.NotContains(t, msg, ".log")
			}
			// Later segments are still served.
			base3 := segmentBase(t, segs[2])
			res, err := e.Read(ctx, log, base3, ReadOptions{MaxBytes: 1 << 20})
			require.NoError(t, err)
			require.Equal(t, base3, res.Records[0].GetOffset())
		})
	}
}

func segmentBase(t *testing.T, path string) int64 {
	var base int64
	_, err := fmt.Sscanf(filepath.Base(path), "%020d.log", &base)
	require.NoError(t, err)
	return base
}

// batchStarts returns the positions of the record batches of a segment file
// (see the format in partitionlog/doc.go).
func batchStarts(t *testing.T, data []byte) []int {
	t.Helper()
	var out []int
	for pos := 0; pos < len(data); pos += 12 + int(binary.BigEndian.Uint32(data[pos+8:])) {
		out = append(out, pos)
	}
	require.Greater(t, len(out), 2)
	return out
}

// fixCRCs recomputes the CRC-32C of every record batch of a segment file
// (see the format in partitionlog/doc.go).
func fixCRCs(t *testing.T, data []byte) []byte {
	t.Helper()
	table := crc32.MakeTable(crc32.Castagnoli)
	for pos := 0; pos < len(data); {
		end := pos + 12 + int(binary.BigEndian.Uint32(data[pos+8:]))
		require.LessOrEqual(t, end, len(data))
		binary.BigEndian.PutUint32(data[pos+12:], crc32.Checksum(data[pos+16:end], table))
		pos = end
	}
	return data
}

// At startup the engine deletes the data of a queue the catalog no longer
// has only when the catalog remembers deleting it (a tombstone): data of a
// queue it does not know — another cluster's etcd, a catalog that lost its
// data — is kept, as it is when etcd cannot be asked.
func TestStartDeletesOnlyQueuesWithATombstone(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	cfg := testConfig(t.TempDir())
	unknown, deleted := catalog.NewQueueID(), catalog.NewQueueID()
	for _, q := range []string{unknown, deleted} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, "q", q, "0"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, "q", q, "0", "00000000000000000000.log"), []byte{}, 0o644))
	}
	_, err := cli.Put(ctx, catalog.DeletedQueueKey(deleted), "1")
	require.NoError(t, err)

	e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
	require.NoError(t, err)
	e.Start(ctx)
	require.NoError(t, e.Close())
	require.DirExists(t, filepath.Join(cfg.Dir, "q", unknown), "no tombstone: kept")
	require.NoDirExists(t, filepath.Join(cfg.Dir, "q", deleted), "tombstone: deleted")

	// etcd unreachable: nothing is deleted.
	_, err = cli.Put(ctx, catalog.DeletedQueueKey(unknown), "1")
	require.NoError(t, err)
	unreachable, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 100 * time.Millisecond, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer unreachable.Close()
	blind := catalog.NewCache(unreachable, quietLogger())
	e, err = NewEngine(cfg, blind, nil, time.Now, quietLogger())
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e.Start(short)
	require.NoError(t, e.Close())
	require.DirExists(t, filepath.Join(cfg.Dir, "q", unknown), "etcd unreachable: kept")
}

// A pre-encoded batch (a Kafka record batch, say) is stored as it came and
// served back as the same bytes; a reader of records is told to read it as
// a batch instead of getting misread bytes.
func TestOpaqueBatchesRoundTrip(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "p", DisplayName: "k", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 1, RetentionMs: 3600_000}
	b, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(b))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	e, err := NewEngine(testConfig(t.TempDir()), cache, nil, time.Now, quietLogger())
	require.NoError(t, err)
	defer e.Close()

	log := logid.Partition(q.GetId(), 0)
	payload := kafkaBatch(-1, 0, 0, 3, "records, opaque to storage")
	resp, err := e.Append(ctx, &storagev1.AppendRequest{Log: log, Batch: &storagev1.RecordBatch{
		Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, RecordCount: 3, FirstTimestampMs: 10, MaxTimestampMs: 12, Data: payload,
	}})
	require.NoError(t, err)
	require.EqualValues(t, 0, resp.GetFirstOffset())
	_, err = e.Append(ctx, &storagev1.AppendRequest{Log: log, Records: []*storagev1.Record{{TimestampMs: 13, MessageId: "m", Message: &dmsv1.Message{Body: []byte("native")}}}})
	require.NoError(t, err)

	res, err := e.Read(ctx, log, 1, ReadOptions{MaxBytes: 1 << 20, RawBatches: true})
	require.NoError(t, err)
	require.Len(t, res.Batches, 2, "the batch holding offset 1 comes whole, then the next")
	require.Equal(t, storagev1.BatchFormat_BATCH_FORMAT_KAFKA, res.Batches[0].GetFormat())
	require.Equal(t, payload, res.Batches[0].GetData())
	require.EqualValues(t, 3, res.Batches[0].GetRecordCount())
	require.EqualValues(t, 3, res.Batches[1].GetBaseOffset())
	require.Equal(t, storagev1.BatchFormat_BATCH_FORMAT_NATIVE, res.Batches[1].GetFormat())

	_, err = e.Read(ctx, log, 0, ReadOptions{MaxBytes: 1 << 20})
	require.ErrorIs(t, err, partitionlog.ErrOpaqueBatch)
	res, err = e.Read(ctx, log, 3, ReadOptions{MaxBytes: 1 << 20})
	require.NoError(t, err)
	require.Equal(t, "native", string(res.Records[0].GetRecord().GetMessage().GetBody()))

	_, err = e.Append(ctx, &storagev1.AppendRequest{Log: log, Batch: &storagev1.RecordBatch{Format: storagev1.BatchFormat_BATCH_FORMAT_NATIVE, RecordCount: 2, Data: []byte{1, 2, 3}}})
	require.ErrorIs(t, err, errs.ErrRequestInvalid, "a malformed native batch is refused")
}

// kafkaBatch is a Kafka record batch header (magic 2) with the producer
// fields set, followed by opaque bytes.
func kafkaBatch(producerID int64, epoch int16, seq, count int32, rest string) []byte {
	b := make([]byte, 61, 61+len(rest))
	be := binary.BigEndian
	b[16] = 2
	be.PutUint32(b[23:], uint32(count-1))
	be.PutUint64(b[43:], uint64(producerID))
	be.PutUint16(b[51:], uint16(epoch))
	be.PutUint32(b[53:], uint32(seq))
	be.PutUint32(b[57:], uint32(count))
	return append(b, rest...)
}

// An idempotent Kafka producer's retried batch is stored once, a batch that
// skips sequence numbers or comes from a replaced epoch is refused, and the
// leader rebuilds what it knows of the producers from the log after a
// restart.
func TestKafkaProducerSequences(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "p", DisplayName: "k", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 1, RetentionMs: 3600_000}
	b, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(b))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	cfg := testConfig(t.TempDir())
	e, err := NewEngine(cfg, cache, nil, time.Now, quietLogger())
	require.NoError(t, err)
	log := logid.Partition(q.GetId(), 0)
	send := func(e *Engine, pid int64, epoch int16, seq, count int32) (*storagev1.AppendResponse, error) {
		return e.Append(ctx, &storagev1.AppendRequest{Log: log, Batch: &storagev1.RecordBatch{
			Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, RecordCount: count, Data: kafkaBatch(pid, epoch, seq, count, "x"),
		}})
	}
	r, err := send(e, 7, 0, 10, 2) // the first batch of a producer may start anywhere
	require.NoError(t, err)
	require.EqualValues(t, 0, r.GetFirstOffset())
	r, err = send(e, 7, 0, 12, 3)
	require.NoError(t, err)
	require.EqualValues(t, 2, r.GetFirstOffset())
	r, err = send(e, 7, 0, 10, 2)
	require.NoError(t, err)
	require.True(t, r.GetDuplicate())
	require.EqualValues(t, 0, r.GetFirstOffset(), "a retry gets the first attempt's offset")
	_, err = send(e, 7, 0, 16, 1)
	require.ErrorIs(t, err, errs.ErrOutOfOrderSequence, "15 is missing")
	_, err = send(e, 8, 0, 0, 1) // another producer is independent
	require.NoError(t, err)
	require.NoError(t, e.Close())

	e, err = NewEngine(cfg, cache, nil, time.Now, quietLogger())
	require.NoError(t, err)
	defer e.Close()
	r, err = send(e, 7, 0, 12, 3)
	require.NoError(t, err)
	require.True(t, r.GetDuplicate(), "rebuilt from the log after a restart")
	require.EqualValues(t, 2, r.GetFirstOffset())
	_, err = send(e, 7, 1, 0, 1) // a new epoch starts over
	require.NoError(t, err)
	_, err = send(e, 7, 0, 15, 1)
	require.ErrorIs(t, err, errs.ErrProducerFenced)
}

// TestKeyedAppendsWhoseCallerGaveUpAreStoredOnce: a caller that gives up
// (its context ends) while its keyed append is being written does not know
// whether it was stored; its retry with the same key must find it, never
// store the records a second time.
func TestKeyedAppendsWhoseCallerGaveUpAreStoredOnce(t *testing.T) {
	cli := startEtcd(t)
	ctx := t.Context()
	q := &metadatav1.QueueRecord{Id: catalog.NewQueueID(), Project: "p", DisplayName: "n", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, RetentionMs: 3600_000}
	b, err := proto.Marshal(q)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueKey(q.GetId()), string(b))
	require.NoError(t, err)
	cache := catalog.NewCache(cli, quietLogger())
	require.NoError(t, cache.Start(ctx))
	e, err := NewEngine(testConfig(t.TempDir()), cache, nil, time.Now, quietLogger())
	require.NoError(t, err)
	defer e.Close()

	log := logid.Partition(q.GetId(), 0)
	const keys = 3000
	gaveUp := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			req := &storagev1.AppendRequest{Log: log, IdempotenceKey: fmt.Sprint("k", i), Durability: storagev1.Durability_DURABILITY_SYNC,
				Records: []*storagev1.Record{{TimestampMs: 1, MessageId: fmt.Sprint("m", i), Message: &dmsv1.Message{Body: []byte(fmt.Sprint(i))}}}}
			// The first attempt's caller gives up somewhere between before
			// the write and after its fsync.
			actx, cancel := context.WithTimeout(ctx, time.Duration(i%60)*100*time.Microsecond)
			_, err := e.Append(actx, req)
			cancel()
			if err != nil {
				mu.Lock()
				gaveUp++
				mu.Unlock()
				_, err = e.Append(ctx, req)
			}
			require.NoError(t, err)
		})
	}
	wg.Wait()
	t.Logf("%d of %d first attempts ended with their caller giving up", gaveUp, keys)

	stored := map[string]int{}
	for from := int64(0); ; {
		res, err := e.Read(ctx, log, from, ReadOptions{MaxBytes: 1 << 20})
		require.NoError(t, err)
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			stored[string(r.GetRecord().GetMessage().GetBody())]++
			from = r.GetOffset() + 1
		}
	}
	require.Len(t, stored, keys, "every key stored")
	for body, n := range stored {
		require.Equal(t, 1, n, "message %s stored %d times", body, n)
	}
}
