package datakeys_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/partitionlog"
	"github.com/opendms/dms/services/testserver"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

func masterRing(t *testing.T, seed byte, ids ...uint32) *partitionlog.Keyring {
	t.Helper()
	var keys []partitionlog.Key
	for _, id := range ids {
		secret := make([]byte, 32)
		for i := range secret {
			secret[i] = seed + byte(id) + byte(i)
		}
		keys = append(keys, partitionlog.Key{ID: id, Secret: secret})
	}
	ring, err := partitionlog.NewKeyring(keys...)
	require.NoError(t, err)
	return ring
}

// Two nodes (two managers on one etcd) racing for a project's first key
// agree on one; a rotation through one reaches the other through the watch
// and its subscribers hear of it; old keys stay.
func TestManagersAgreeOnKeys(t *testing.T) {
	endpoint := testserver.StartEtcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ring := masterRing(t, 1, 1)
	a := datakeys.NewManager(client(t, endpoint), datakeys.NewMasterKeyProvider(ring), time.Now, quiet())
	b := datakeys.NewManager(client(t, endpoint), datakeys.NewMasterKeyProvider(ring), time.Now, quiet())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	heard := make(chan string, 10)
	b.Subscribe(func(p string) { heard <- p })

	var wg sync.WaitGroup
	got := make([][]partitionlog.Key, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := a
			if i%2 == 1 {
				m = b
			}
			keys, err := m.Keys(ctx, "p", true)
			require.NoError(t, err)
			got[i] = keys
		}()
	}
	wg.Wait()
	for _, keys := range got {
		require.Len(t, keys, 1)
		require.Equal(t, datakeys.FirstKeyID+1, keys[0].ID)
		require.Equal(t, got[0][0].Secret, keys[0].Secret)
	}

	rotated, err := a.Rotate(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, datakeys.FirstKeyID+2, rotated.GetId())
	// b may first hear of the key a made in the race; then of the rotation.
	var keys []partitionlog.Key
	for len(keys) < 2 {
		select {
		case p := <-heard:
			require.Equal(t, "p", p)
		case <-time.After(30 * time.Second):
			t.Fatal("the other manager did not hear of the rotation")
		}
		keys, err = b.Keys(ctx, "p", false)
		require.NoError(t, err)
	}
	require.Len(t, keys, 2)
	require.Equal(t, got[0][0], keys[0])
	require.Equal(t, rotated.GetId(), keys[1].ID)

	// Other projects are apart.
	other, err := b.Keys(ctx, "q", false)
	require.NoError(t, err)
	require.Empty(t, other)
}

// A wrapped key opens only for its own project and id, and only with the
// master key that wrapped it (or a ring that still holds it).
func TestWrappedKeysAreBound(t *testing.T) {
	endpoint := testserver.StartEtcd(t)
	cli := client(t, endpoint)
	ctx := context.Background()
	m := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 1, 1)), time.Now, quiet())
	_, err := m.Keys(ctx, "victim", true)
	require.NoError(t, err)

	// Copying the victim's record to another project does not give that
	// project the victim's key.
	resp, err := cli.Get(ctx, datakeys.Prefix+"victim")
	require.NoError(t, err)
	rec := &storagev1.ProjectDataKeys{}
	require.NoError(t, proto.Unmarshal(resp.Kvs[0].Value, rec))
	rec.ProjectId = "thief"
	v, _ := proto.Marshal(rec)
	_, err = cli.Put(ctx, datakeys.Prefix+"thief", string(v))
	require.NoError(t, err)
	_, err = datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 1, 1)), time.Now, quiet()).Keys(ctx, "thief", false)
	require.ErrorContains(t, err, "does not unwrap")

	// Another master key under the same id does not unwrap it; a rotated
	// key file that still holds the old key does.
	_, err = datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 9, 1)), time.Now, quiet()).Keys(ctx, "victim", false)
	require.ErrorContains(t, err, "does not unwrap")
	_, err = datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 1, 2)), time.Now, quiet()).Keys(ctx, "victim", false)
	require.ErrorContains(t, err, "master key 1, which wrapped a data key, is not in the key file")
	rotatedFile := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 1, 1, 2)), time.Now, quiet())
	keys, err := rotatedFile.Keys(ctx, "victim", false)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	// New keys are wrapped by the new master key.
	k, err := rotatedFile.Rotate(ctx, "victim")
	require.NoError(t, err)
	require.Equal(t, "2", k.GetKekId())
}

// Destroy refuses while the catalog counts queues in the project, leaves
// nothing to unwrap, and ids go on after the destroyed ones.
func TestDestroy(t *testing.T) {
	endpoint := testserver.StartEtcd(t)
	cli := client(t, endpoint)
	ctx := context.Background()
	m := datakeys.NewManager(cli, datakeys.NewMasterKeyProvider(masterRing(t, 1, 1)), time.Now, quiet())
	_, err := m.Keys(ctx, "p", true)
	require.NoError(t, err)
	_, err = cli.Put(ctx, catalog.QueueCountKey("p"), "2")
	require.NoError(t, err)
	_, err = m.Destroy(ctx, "p")
	require.ErrorIs(t, err, errs.ErrDataKeysInUse)
	keys, err := m.Keys(ctx, "p", false)
	require.NoError(t, err)
	require.Len(t, keys, 1)

	_, err = cli.Put(ctx, catalog.QueueCountKey("p"), "0")
	require.NoError(t, err)
	destroyed, err := m.Destroy(ctx, "p")
	require.NoError(t, err)
	require.Len(t, destroyed, 1)
	rec, err := m.Record(ctx, "p")
	require.NoError(t, err)
	require.Empty(t, rec.GetKeys())
	require.Len(t, rec.GetDestroyed(), 1)
	require.Empty(t, rec.GetDestroyed()[0].GetWrapped())
	again, err := m.Destroy(ctx, "p")
	require.NoError(t, err)
	require.Empty(t, again)

	keys, err = m.Keys(ctx, "p", true)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, datakeys.FirstKeyID+2, keys[0].ID)
}

// With no master key, there is nothing to rotate and no key is made.
func TestDisabled(t *testing.T) {
	endpoint := testserver.StartEtcd(t)
	m := datakeys.NewManager(client(t, endpoint), nil, time.Now, quiet())
	require.False(t, m.Enabled())
	keys, err := m.Keys(context.Background(), "p", true)
	require.NoError(t, err)
	require.Empty(t, keys)
	_, err = m.Rotate(context.Background(), "p")
	require.ErrorIs(t, err, errs.ErrEncryptionNotConfigured)
	require.ErrorIs(t, datakeys.ValidateMasterKeyIDs([]uint32{1, datakeys.FirstKeyID}), datakeys.ErrNotDataKey)
	require.NoError(t, datakeys.ValidateMasterKeyIDs([]uint32{1, datakeys.FirstKeyID - 1}))
}
