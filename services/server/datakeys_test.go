package server_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/stretchr/testify/require"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/storage/partitionlog"
	"github.com/opendms/dms/services/testserver"
)

// Crypto-shredding: two projects write messages, each sealed with its own
// data key (project A's across a rotation). A copy of A's segment files is
// taken, as a backup, a disk image or a replica that was down would keep
// them. Once A's queue is deleted and its data keys destroyed, no key the
// node holds (the master key, every data key still in etcd) opens a single
// batch of the copy, and etcd's history no longer has A's wrapped keys;
// project B's data stays readable, through the API and from its files.
func TestCryptoShredding(t *testing.T) {
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("1:"+base64.StdEncoding.EncodeToString(master)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, testserver.WithFlags("-storage.encryption-key-file", keyFile))
	ctx := context.Background()
	keys := dmsv1.NewDataKeyServiceClient(s.Conn)
	const projectA, projectB = "tenant-a", "tenant-b"

	qa := s.CreateQueue(t, projectA, &dmsv1.Queue{DisplayName: "orders"})
	qb := s.CreateQueue(t, projectB, &dmsv1.Queue{DisplayName: "orders"})
	ga, gb := s.CreateGroup(t, qa, "billing"), s.CreateGroup(t, qb, "billing")
	s.Send(t, qa, "secret-A-before-rotation-1", "secret-A-before-rotation-2")
	s.Send(t, qb, "secret-B-1", "secret-B-2")
	rotated, err := keys.RotateDataKey(ctx, &dmsv1.RotateDataKeyRequest{ProjectId: projectA})
	if err != nil {
		t.Fatal(err)
	}
	s.Send(t, qa, "secret-A-after-rotation")

	// Old data stays readable after the rotation.
	got := receiveAll(t, s, ga, 3)
	slices.Sort(got)
	if want := []string{"secret-A-after-rotation", "secret-A-before-rotation-1", "secret-A-before-rotation-2"}; !slices.Equal(got, want) {
		t.Fatalf("project A reads %q, want %q", got, want)
	}
	listA, err := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: projectA})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(listA.GetKeys()); n != 2 || !listA.GetEncryptionEnabled() || listA.GetKeys()[1].GetId() != rotated.GetKey().GetId() ||
		listA.GetKeys()[0].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_RETIRED || listA.GetKeys()[1].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE {
		t.Fatalf("project A's keys after a rotation: %v", listA)
	}
	idsA := []uint32{listA.GetKeys()[0].GetId(), listA.GetKeys()[1].GetId()}

	// On disk: no plaintext, every batch of each queue sealed with its own
	// project's data keys (A's under both of them).
	dirA := filepath.Join(s.DataDir, "storage", "q", qa.GetId())
	dirB := filepath.Join(s.DataDir, "storage", "q", qb.GetId())
	batchesA, batchesB := readSealedBatches(t, dirA), readSealedBatches(t, dirB)
	if len(batchesA) != 2 || len(batchesB) != 1 {
		t.Fatalf("found %d sealed batches of A, %d of B; want 2 and 1", len(batchesA), len(batchesB))
	}
	if batchesA[0].keyID != idsA[0] || batchesA[1].keyID != idsA[1] {
		t.Fatalf("A's batches sealed with key ids %d, %d; want %v", batchesA[0].keyID, batchesA[1].keyID, idsA)
	}
	listB, err := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: projectB})
	if err != nil || len(listB.GetKeys()) != 1 || batchesB[0].keyID != listB.GetKeys()[0].GetId() {
		t.Fatalf("B's keys %v (err %v), its batch sealed with %d", listB, err, batchesB[0].keyID)
	}

	// The backup of A's files, and the harness's proof that it decrypts
	// them while the keys exist.
	backup := t.TempDir()
	copyTree(t, dirA, backup)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdEndpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ring, err := partitionlog.NewKeyring(partitionlog.Key{ID: 1, Secret: master})
	if err != nil {
		t.Fatal(err)
	}
	provider := datakeys.NewMasterKeyProvider(ring)
	before := nodeKeys(t, cli, provider, master)
	for i, b := range readSealedBatches(t, backup) {
		if plain := openWithAny(b, before); !bytes.Contains(plain, []byte("secret-A")) {
			t.Fatalf("batch %d of the backup does not open with the keys that sealed it: the harness cannot tell", i)
		}
	}

	// Not while the project has queues; nothing changes.
	if _, err := keys.DestroyDataKeys(ctx, &dmsv1.DestroyDataKeysRequest{ProjectId: projectA}); rpcstatus.Reason(err) != "DATA_KEYS_IN_USE" {
		t.Fatalf("destroying the keys of a project with a queue: %v", err)
	}
	if l, _ := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: projectA}); len(l.GetKeys()) != 2 || l.GetKeys()[1].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE {
		t.Fatalf("a refused destroy changed the keys: %v", l)
	}
	recBefore, err := cli.Get(ctx, datakeys.Prefix+projectA)
	if err != nil || len(recBefore.Kvs) != 1 {
		t.Fatalf("A's key record: %v %v", recBefore, err)
	}
	if _, err := s.Queues().DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: qa.GetName()}); err != nil {
		t.Fatal(err)
	}
	destroyed, err := keys.DestroyDataKeys(ctx, &dmsv1.DestroyDataKeysRequest{ProjectId: projectA})
	if err != nil || len(destroyed.GetKeys()) != 2 {
		t.Fatalf("destroy: %v %v", destroyed, err)
	}
	if l, _ := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: projectA}); len(l.GetKeys()) != 2 ||
		l.GetKeys()[0].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_DESTROYED || l.GetKeys()[1].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_DESTROYED {
		t.Fatalf("keys after destroy: %v", l)
	}

	// etcd's history no longer has A's wrapped keys.
	if _, err := cli.Get(ctx, datakeys.Prefix+projectA, clientv3.WithRev(recBefore.Kvs[0].ModRevision)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("reading A's key record as it was before the destroy: %v, want a compacted revision", err)
	}
	// Every key the node holds now, each tried on every batch of the
	// backup whatever key id the batch names: none opens one.
	after := nodeKeys(t, cli, provider, master)
	if len(after) < 2 {
		t.Fatalf("the node holds %d keys; want the master key and B's", len(after))
	}
	for i, b := range readSealedBatches(t, backup) {
		if plain := openWithAny(b, after); plain != nil {
			t.Fatalf("batch %d of A's backup opened after its keys were destroyed: %q", i, plain)
		}
		if bytes.Contains(b.raw, []byte("secret-A")) {
			t.Fatalf("batch %d of A's backup holds plaintext", i)
		}
	}

	// B is untouched: its files open with the node's keys, its messages
	// are received.
	for i, b := range readSealedBatches(t, dirB) {
		if plain := openWithAny(b, after); !bytes.Contains(plain, []byte("secret-B")) {
			t.Fatalf("batch %d of B does not open after A's keys were destroyed", i)
		}
	}
	got = receiveAll(t, s, gb, 2)
	slices.Sort(got)
	if !slices.Equal(got, []string{"secret-B-1", "secret-B-2"}) {
		t.Fatalf("project B reads %q", got)
	}

	// A queue made in A afterwards gets a new key; ids are never reused.
	qa2 := s.CreateQueue(t, projectA, &dmsv1.Queue{DisplayName: "orders-again"})
	ga2 := s.CreateGroup(t, qa2, "billing")
	s.Send(t, qa2, "fresh")
	if got := receiveAll(t, s, ga2, 1); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("new queue in A reads %q", got)
	}
	l, _ := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: projectA})
	if n := len(l.GetKeys()); n != 3 || l.GetKeys()[2].GetId() <= idsA[1] || l.GetKeys()[2].GetState() != dmsv1.DataKeyState_DATA_KEY_STATE_ACTIVE {
		t.Fatalf("A's keys after a new queue: %v", l)
	}
}

// Replicas copy sealed batches byte for byte (neither decrypted on the
// leader nor encrypted again on the follower): the follower's segment files
// equal the leader's, across a rotation, and once the leader stops, the
// follower, now leader, opens every batch with the project's data keys it
// unwrapped from etcd.
func TestEncryptedReplicasCopySealedBatches(t *testing.T) {
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("1:"+base64.StdEncoding.EncodeToString(master)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, nodes := startCluster(t, 2, "-storage.encryption-key-file", keyFile, "-storage.min-insync-replicas", "1")
	ctx := context.Background()
	q := nodes[0].CreateQueue(t, "tenant", &dmsv1.Queue{DisplayName: "replicated", PartitionCount: 1})
	g := nodes[0].CreateGroup(t, q, "g")
	var sent []string
	send := func() {
		body := fmt.Sprintf("secret-%d", len(sent))
		nodes[0].Send(t, q, body)
		sent = append(sent, body)
	}
	for range 5 {
		send()
	}
	rotated, err := dmsv1.NewDataKeyServiceClient(nodes[1].Conn).RotateDataKey(ctx, &dmsv1.RotateDataKeyRequest{ProjectId: "tenant"})
	require.NoError(t, err)
	units := placementOf(t, nodes[0], q.GetId())
	require.Len(t, units, 1)
	leader := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == units[0].GetLeader() })
	require.GreaterOrEqual(t, leader, 0)
	follower := 1 - leader
	dir := func(i int) string { return filepath.Join(nodes[i].DataDir, "storage", "q", q.GetId(), "0") }
	// The leader hears of the rotation through etcd: send until a batch is
	// sealed with the new key.
	require.Eventually(t, func() bool {
		send()
		bs := readSealedBatches(t, dir(leader))
		return bs[len(bs)-1].keyID == rotated.GetKey().GetId()
	}, 30*time.Second, 10*time.Millisecond, "batches sealed with the rotated key")
	require.Eventually(t, func() bool {
		return bytes.Equal(segmentBytes(t, dir(leader)), segmentBytes(t, dir(follower)))
	}, 30*time.Second, 20*time.Millisecond, "the follower's segments equal the leader's")
	keyIDs := map[uint32]bool{}
	for _, b := range readSealedBatches(t, dir(follower)) {
		keyIDs[b.keyID] = true
	}
	require.Len(t, keyIDs, 2, "batches sealed with the first and the rotated key")
	if bytes.Contains(segmentBytes(t, dir(follower)), []byte("secret-")) {
		t.Fatal("plaintext in the follower's segments")
	}

	nodes[leader].Server.Stop()
	require.Eventually(t, func() bool {
		u := placementOf(t, nodes[follower], q.GetId())
		return u[0].GetLeader() == nodes[follower].NodeName
	}, 30*time.Second, 20*time.Millisecond, "the follower leads")
	got := receiveAll(t, nodes[follower], g, len(sent))
	require.ElementsMatch(t, sent, got)
}

// segmentBytes concatenates the segment files of a log directory.
func segmentBytes(t *testing.T, dir string) []byte {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	slices.Sort(segs)
	var out []byte
	for _, p := range segs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data...)
	}
	return out
}

// The data key API says so when encryption at rest is off, and a project
// then has no keys.
func TestDataKeysWithoutEncryption(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	keys := dmsv1.NewDataKeyServiceClient(s.Conn)
	q := s.CreateQueue(t, "plain", &dmsv1.Queue{DisplayName: "q"})
	s.Send(t, q, "in the clear")
	if _, err := keys.RotateDataKey(ctx, &dmsv1.RotateDataKeyRequest{ProjectId: "plain"}); rpcstatus.Reason(err) != "ENCRYPTION_NOT_CONFIGURED" {
		t.Fatalf("rotate without a master key: %v", err)
	}
	l, err := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: "plain"})
	if err != nil || l.GetEncryptionEnabled() || len(l.GetKeys()) != 0 {
		t.Fatalf("list without a master key: %v %v", l, err)
	}
	if _, err := keys.ListDataKeys(ctx, &dmsv1.ListDataKeysRequest{ProjectId: "not a project"}); rpcstatus.Reason(err) != "PROJECT_INVALID" {
		t.Fatalf("list with a malformed project id: %v", err)
	}

	// The same over REST.
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/v1/projects/plain/dataKeys", nil)
	if code, body := do(t, req); code != http.StatusOK || body["encryptionEnabled"] != false || len(body["keys"].([]any)) != 0 {
		t.Fatalf("REST list: %d %v", code, body)
	}
	req, _ = http.NewRequest("POST", "http://"+s.HTTPAddr+"/v1/projects/plain/dataKeys:rotate", strings.NewReader("{}"))
	if code, body := do(t, req); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body), "ENCRYPTION_NOT_CONFIGURED") {
		t.Fatalf("REST rotate without a master key: %d %v", code, body)
	}
	req, _ = http.NewRequest("POST", "http://"+s.HTTPAddr+"/v1/projects/plain/dataKeys:destroy", strings.NewReader("{}"))
	if code, body := do(t, req); code != http.StatusOK || len(body["keys"].([]any)) != 0 {
		t.Fatalf("REST destroy without keys: %d %v", code, body)
	}
}

// sealedBatch is one encrypted batch read straight from a segment file.
type sealedBatch struct {
	keyID uint32
	raw   []byte // from the magic byte to the end
}

// readSealedBatches parses every batch of every segment under dir with the
// format of partitionlog's doc.go, without the package's help.
func readSealedBatches(t *testing.T, dir string) []sealedBatch {
	t.Helper()
	var segs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
			segs = append(segs, p)
		}
		return nil
	})
	slices.Sort(segs)
	var out []sealedBatch
	for _, p := range segs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for len(data) >= 12 {
			n := int(binary.BigEndian.Uint32(data[8:12]))
			if n == 0 || 12+n > len(data) {
				break
			}
			b := data[12 : 12+n] // crc, then magic on
			if flags := binary.BigEndian.Uint16(b[5:7]); flags&1 == 0 {
				t.Fatalf("%s holds a batch that is not encrypted (flags %#x)", p, flags)
			}
			out = append(out, sealedBatch{keyID: binary.BigEndian.Uint32(b[27:31]), raw: b[4:]})
			data = data[12+n:]
		}
	}
	return out
}

// openWithAny tries every key on b whatever key id it names and returns
// the plaintext of the first that authenticates it, or nil.
func openWithAny(b sealedBatch, keys [][]byte) []byte {
	const aadEnd = 39 - 16 + 4 + 12 // header from magic, key id, nonce
	for _, k := range keys {
		block, _ := aes.NewCipher(k)
		aead, _ := cipher.NewGCM(block)
		plain, err := aead.Open(nil, b.raw[aadEnd-12:aadEnd], b.raw[aadEnd:], b.raw[:aadEnd])
		if err == nil {
			return plain
		}
	}
	return nil
}

// nodeKeys returns every key the node holds: the master key, and every data
// key stored in etcd unwrapped with it.
func nodeKeys(t *testing.T, cli *clientv3.Client, provider *datakeys.MasterKeyProvider, master []byte) [][]byte {
	t.Helper()
	ctx := context.Background()
	out := [][]byte{master}
	resp, err := cli.Get(ctx, datakeys.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		rec := &storagev1.ProjectDataKeys{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			t.Fatal(err)
		}
		for _, k := range append(rec.GetKeys(), rec.GetDestroyed()...) {
			if len(k.GetWrapped()) == 0 {
				continue
			}
			secret, err := provider.Unwrap(ctx, k.GetKekId(), k.GetWrapped(), []byte(fmt.Sprintf("dms data key v1\x00%s\x00%d", rec.GetProjectId(), k.GetId())))
			if err != nil {
				t.Fatalf("unwrapping key %d of %s: %v", k.GetId(), rec.GetProjectId(), err)
			}
			out = append(out, secret)
		}
	}
	return out
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// With authentication on, data keys are the operator's: an administrator
// of a project may not rotate or destroy its keys, nor list them.
func TestDataKeysAreTheOperators(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	require.NoError(t, err)
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: accounts.GetAccounts()[0].GetId(), User: &dmsv1.User{Name: "owner"}, Password: "owner's password"})
	require.NoError(t, err)
	_, err = id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: server.DefaultProject, UserId: u.GetUser().GetId(), Role: dmsv1.Role_ROLE_ADMIN})
	require.NoError(t, err)
	owner := bearer(ctx, unscopedToken(t, s, "Default", "owner", "owner's password"))
	keys := dmsv1.NewDataKeyServiceClient(s.Conn)
	_, err = keys.RotateDataKey(owner, &dmsv1.RotateDataKeyRequest{ProjectId: server.DefaultProject})
	require.Equal(t, "PERMISSION_DENIED", rpcstatus.Reason(err), "%v", err)
	_, err = keys.DestroyDataKeys(owner, &dmsv1.DestroyDataKeysRequest{ProjectId: server.DefaultProject})
	require.Equal(t, "PERMISSION_DENIED", rpcstatus.Reason(err), "%v", err)
	_, err = keys.ListDataKeys(owner, &dmsv1.ListDataKeysRequest{ProjectId: server.DefaultProject})
	require.Equal(t, "PERMISSION_DENIED", rpcstatus.Reason(err), "%v", err)
	_, err = keys.RotateDataKey(ctx, &dmsv1.RotateDataKeyRequest{ProjectId: server.DefaultProject})
	require.Equal(t, "UNAUTHENTICATED", rpcstatus.Reason(err), "%v", err)
	// The operator passes authorization (and finds encryption off).
	_, err = keys.RotateDataKey(admin, &dmsv1.RotateDataKeyRequest{ProjectId: server.DefaultProject})
	require.Equal(t, "ENCRYPTION_NOT_CONFIGURED", rpcstatus.Reason(err), "%v", err)
}
