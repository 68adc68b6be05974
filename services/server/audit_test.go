package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// auditRecords lists the whole trail, every page.
func auditRecords(t *testing.T, ctx context.Context, s *testserver.Server, req *dmsv1.ListAuditRecordsRequest) []*dmsv1.AuditRecord {
	t.Helper()
	cli := dmsv1.NewAuditServiceClient(s.Conn)
	var out []*dmsv1.AuditRecord
	req = proto.Clone(req).(*dmsv1.ListAuditRecordsRequest)
	req.PageSize = 2 // several pages, so that paging is exercised
	for {
		resp, err := cli.ListAuditRecords(ctx, req)
		if err != nil {
			t.Fatalf("ListAuditRecords: %v", err)
		}
		out = append(out, resp.GetRecords()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// waitRecord waits for a record of an action and returns it.
func waitRecord(t *testing.T, ctx context.Context, s *testserver.Server, action string, match func(*dmsv1.AuditRecord) bool) *dmsv1.AuditRecord {
	t.Helper()
	var found *dmsv1.AuditRecord
	eventually(t, func() bool {
		for _, r := range auditRecords(t, ctx, s, &dmsv1.ListAuditRecordsRequest{Action: action}) {
			if match == nil || match(r) {
				found = r
				return true
			}
		}
		return false
	}, "an audit record of "+action)
	return found
}

func verifyTrail(t *testing.T, ctx context.Context, s *testserver.Server) *dmsv1.VerifyAuditTrailResponse {
	t.Helper()
	v, err := dmsv1.NewAuditServiceClient(s.Conn).VerifyAuditTrail(ctx, &dmsv1.VerifyAuditTrailRequest{})
	if err != nil {
		t.Fatalf("VerifyAuditTrail: %v", err)
	}
	return v
}

// TestAuditTrail: management calls and a denied request are recorded with
// who, what, where and why, secrets left out; the chain verifies, survives
// a restart, and a forged record breaks it at that record.
func TestAuditTrail(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	account := accounts.GetAccounts()[0].GetId()
	const secret = "a-secret-password-never-stored"
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "mallory"}, Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	created0, err := s.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "audited"}})
	if err != nil {
		t.Fatal(err)
	}
	q := created0.GetQueue()
	// mallory has no role in the project: her queue creation is denied.
	mallory := bearer(ctx, unscopedToken(t, s, "Default", "mallory", secret))
	if _, err := s.Queues().CreateQueue(mallory, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "not-hers"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("mallory's CreateQueue: %v, want PERMISSION_DENIED", err)
	}
	// An anonymous REST call is refused and recorded too.
	if code, _ := call(t, "DELETE", "http://"+s.HTTPAddr+"/v1/"+q.GetName(), "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous REST delete: %d, want 401", code)
	}

	created := waitRecord(t, admin, s, "CreateUser", nil)
	if !strings.HasPrefix(created.GetPrincipal(), "user:") || !created.GetAllowed() || created.GetCode() != "OK" ||
		created.GetSourceAddress() == "" || created.GetTime() == nil || created.GetNode() == "" {
		t.Errorf("CreateUser record: %v", created)
	}
	if strings.Contains(created.GetParameters(), secret) || !strings.Contains(created.GetParameters(), "mallory") {
		t.Errorf("CreateUser parameters %q: want the user's name and not the password", created.GetParameters())
	}
	cq := waitRecord(t, admin, s, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return r.GetAllowed() })
	if cq.GetResource() != "projects/"+server.DefaultProject || cq.GetDecidedBy() == "" || !strings.Contains(cq.GetParameters(), "audited") {
		t.Errorf("admin's CreateQueue record: %v", cq)
	}
	denied := waitRecord(t, admin, s, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return !r.GetAllowed() })
	if denied.GetPrincipal() != "user:"+u.GetUser().GetId() || denied.GetCode() != "PermissionDenied" || denied.GetReason() == "" ||
		denied.GetDecidedBy() == "" || denied.GetErrorMessage() == "" {
		t.Errorf("denied CreateQueue record: %v", denied)
	}
	anon := waitRecord(t, admin, s, "DeleteQueue", nil)
	if anon.GetPrincipal() != "anonymous" || anon.GetCode() != "Unauthenticated" || anon.GetResource() != q.GetName() {
		t.Errorf("anonymous DeleteQueue record: %v", anon)
	}
	// An unclean leader election, the operator's tool's call on the
	// internal listener (here of a node that is not a replica, refused):
	// recorded whatever its result, as the system's.
	_, electErr := metadatav1.NewMetadataServiceClient(s.Internal).ElectLeader(ctx, &metadatav1.ElectLeaderRequest{Unit: placement.DeliveryShard(0), Node: "no-such-node", Unclean: true})
	elect := waitRecord(t, admin, s, "ElectLeader", nil)
	if elect.GetPrincipal() != "system" || elect.GetCode() != status.Code(electErr).String() || !strings.Contains(elect.GetParameters(), `"unclean":true`) {
		t.Errorf("ElectLeader record (the call answered %v): %v", electErr, elect)
	}
	for _, r := range auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{}) {
		if strings.Contains(r.String(), secret) {
			t.Fatalf("a record holds the password: %v", r)
		}
	}
	// Filters: by principal, and by time (none in the future).
	for _, r := range auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{Principal: denied.GetPrincipal()}) {
		if r.GetPrincipal() != denied.GetPrincipal() {
			t.Errorf("principal filter returned %v", r)
		}
	}
	since := auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{StartTime: created.GetTime(), Action: "CreateUser"})
	if len(since) != 1 || since[0].GetOffset() != created.GetOffset() {
		t.Errorf("records of CreateUser since its own: %v", since)
	}
	if rs := auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{StartTime: timestamppb.New(created.GetTime().AsTime().AddDate(1, 0, 0))}); len(rs) != 0 {
		t.Errorf("records a year ahead: %v", rs)
	}

	// Only the operator's administrators read the trail.
	if _, err := dmsv1.NewAuditServiceClient(s.Conn).ListAuditRecords(mallory, &dmsv1.ListAuditRecordsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("mallory lists the trail: %v", err)
	}
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v1/audit/records?action=CreateUser", "", map[string]string{"X-Auth-Token": unscopedToken(t, s, "Default", "admin", adminPassword)}); code != http.StatusOK || len(body["records"].([]any)) == 0 {
		t.Fatalf("REST list: %d %v", code, body)
	}

	v := verifyTrail(t, admin, s)
	if !v.GetIntact() || v.GetRecordsChecked() < 4 || v.GetFirstBrokenOffset() != -1 || len(v.GetHeadHash()) != sha256.Size {
		t.Fatalf("verify: %v", v)
	}

	// A restart keeps the chain: records written after it link to those
	// before.
	s.Restart(t)
	admin = bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	if _, err := s.Queues().DeleteQueue(admin, &dmsv1.DeleteQueueRequest{Name: q.GetName()}); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, admin, s, "DeleteQueue", func(r *dmsv1.AuditRecord) bool { return r.GetAllowed() })
	after := verifyTrail(t, admin, s)
	if !after.GetIntact() || after.GetRecordsChecked() <= v.GetRecordsChecked() {
		t.Fatalf("verify after a restart: %v (before %v)", after, v)
	}

	// A record forged through storage's internal API, in the owner's
	// epoch, with a made-up previous hash: verification names it.
	pl, err := metadatav1.NewMetadataServiceClient(s.Internal).DescribePlacement(ctx, &metadatav1.DescribePlacementRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var epoch int64
	for _, u := range pl.GetUnits() {
		if proto.Equal(u.GetUnit(), placement.DeliveryShard(0)) {
			epoch = u.GetOwnerEpoch()
		}
	}
	forged, _ := proto.Marshal(&dmsv1.AuditRecord{Principal: "user:nobody", Action: "/dms.v1.QueueService/CreateQueue", PreviousHash: make([]byte, sha256.Size)})
	app, err := storagev1.NewStorageServiceClient(s.Internal).Append(ctx, &storagev1.AppendRequest{Log: logid.Audit(), WriterEpoch: epoch,
		Records: []*storagev1.Record{{Payload: forged}}})
	if err != nil {
		t.Fatal(err)
	}
	broken := verifyTrail(t, admin, s)
	if broken.GetIntact() || broken.GetFirstBrokenOffset() != app.GetFirstOffset() || broken.GetBrokenReason() == "" {
		t.Fatalf("verify after a forged record at %d: %v", app.GetFirstOffset(), broken)
	}
}

// In a cluster one node writes the trail; the others send it the records
// of the calls they serve, and any node reads and verifies it.
func TestAuditTrailAcrossNodes(t *testing.T) {
	t.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	etcd := testserver.StartEtcd(t)
	n1 := testserver.Start(t, testserver.WithFlags("-auth.enabled", "-etcd.endpoints", etcd, "-node.name", "u1"))
	n2 := testserver.Start(t, testserver.WithFlags("-auth.enabled", "-etcd.endpoints", etcd, "-node.name", "u2"))
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, n1, "Default", "admin", adminPassword))
	for i, n := range []*testserver.Server{n1, n2} {
		if _, err := n.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "q" + string(rune('a'+i))}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, reader := range []*testserver.Server{n1, n2} {
		for _, node := range []string{"u1", "u2"} {
			waitRecord(t, admin, reader, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return r.GetNode() == node && r.GetAllowed() })
		}
		if v := verifyTrail(t, admin, reader); !v.GetIntact() || v.GetRecordsChecked() < 2 {
			t.Fatalf("verify on %s: %v", reader.NodeName, v)
		}
	}
}

// BenchmarkAuditedCalls: refused calls (anonymous CreateQueue over gRPC,
// 16 at a time), each recorded, timed until the last record is chained
// and stored (fsynced) in the trail: what a flood of refused calls costs
// and how fast the writer keeps up.
func BenchmarkAuditedCalls(b *testing.B) {
	b.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	s := testserver.Start(b, testserver.WithFlags("-auth.enabled"))
	ctx := context.Background()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":"` + adminPassword + `","domain":{"name":"Default"}}}}}}`
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	admin := bearer(ctx, resp.Header.Get("X-Subject-Token"))
	cli := dmsv1.NewAuditServiceClient(s.Conn)
	count := func() int64 {
		v, err := cli.VerifyAuditTrail(admin, &dmsv1.VerifyAuditTrailRequest{})
		if err != nil || !v.GetIntact() {
			b.Fatalf("verify: %v %v", v, err)
		}
		return v.GetRecordsChecked()
	}
	before := count()
	req := &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "refused"}}
	b.SetParallelism(8) // 16 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Queues().CreateQueue(ctx, req); status.Code(err) != codes.Unauthenticated {
				b.Errorf("anonymous CreateQueue: %v", err)
				return
			}
		}
	})
	for count() < before+int64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// A record changed on disk by someone who also fixed up the batch's
// CRC-32C (so that storage reads it as sound) breaks the chain at the
// record after it.
func TestAuditTrailTamperedOnDisk(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	for _, name := range []string{"first-queue", "tamper-me", "third-queue"} {
		if _, err := s.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: name}}); err != nil {
			t.Fatal(err)
		}
	}
	target := waitRecord(t, admin, s, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return strings.Contains(r.GetParameters(), "tamper-me") })
	waitRecord(t, admin, s, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return strings.Contains(r.GetParameters(), "third-queue") })
	if v := verifyTrail(t, admin, s); !v.GetIntact() {
		t.Fatalf("verify before: %v", v)
	}
	seg := filepath.Join(s.DataDir, "storage", "a", "audit", "0", "00000000000000000000.log")
	s.RestartWith(t, func() {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.Index(b, []byte("tamper-me"))
		if at < 0 || bytes.Count(b, []byte("tamper-me")) != 1 {
			t.Fatalf("the record is not in %s once in the clear (found at %d)", seg, at)
		}
		copy(b[at:], "tamper-ME") // same length: the protobuf stays valid
		// Fix up the CRC of the batch holding it (partitionlog/doc.go:
		// baseOffset 8, length 4, crc 4 over bytes 16..end).
		for pos := 0; pos+16 <= len(b); {
			end := pos + 12 + int(binary.BigEndian.Uint32(b[pos+8:]))
			if at >= pos && at < end {
				binary.BigEndian.PutUint32(b[pos+12:], crc32.Checksum(b[pos+16:end], crc32.MakeTable(crc32.Castagnoli)))
				break
			}
			pos = end
		}
		if err := os.WriteFile(seg, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	admin = bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	var changed bool
	for _, r := range auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{}) {
		changed = changed || strings.Contains(r.GetParameters(), "tamper-ME")
	}
	if !changed {
		t.Fatal("storage does not serve the changed record: the test changed nothing it can see")
	}
	v := verifyTrail(t, admin, s)
	if v.GetIntact() || v.GetFirstBrokenOffset() != target.GetOffset()+1 {
		t.Fatalf("verify after changing record %d on disk: %v, want broken at %d", target.GetOffset(), v, target.GetOffset()+1)
	}
}

// The Kafka adapter decides its requests itself; its denials reach the
// trail through the directory it is given, named kafka/{action}.
func TestAuditKafkaDenial(t *testing.T) {
	s := startAuth(t, testserver.WithFlags("-kafka.addr", "127.0.0.1:0"))
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: accounts.GetAccounts()[0].GetId(), User: &dmsv1.User{Name: "vera"}, Password: "vera's password"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: server.DefaultProject, UserId: u.GetUser().GetId(), Role: dmsv1.Role_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr), kgo.SASL(plain.Auth{User: "vera", Pass: "vera's password"}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	topic := kmsg.NewCreateTopicsRequestTopic()
	topic.Topic, topic.NumPartitions, topic.ReplicationFactor = "not-for-viewers", 1, 1
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode == 0 {
		t.Fatalf("a viewer's CreateTopics: %+v, want refused", resp.Topics)
	}
	var found *dmsv1.AuditRecord
	eventually(t, func() bool {
		for _, r := range auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{Principal: "user:" + u.GetUser().GetId()}) {
			if strings.HasPrefix(r.GetAction(), "kafka/") && !r.GetAllowed() {
				found = r
				return true
			}
		}
		return false
	}, fmt.Sprintf("the Kafka denial (%v %v) in the trail: %v", resp.Topics[0].ErrorCode, *resp.Topics[0].ErrorMessage, auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{})))
	if found.GetCode() != "PermissionDenied" || found.GetDecidedBy() == "" || found.GetResource() == "" {
		t.Errorf("Kafka denial record: %v", found)
	}
}

// Records older than -audit.retention go, a whole segment at a time; the
// trail left verifies from its new first record.
func TestAuditTrailRetention(t *testing.T) {
	clock := testserver.NewClock(time.Now())
	s := startAuth(t, testserver.WithClock(clock), testserver.WithFlags("-audit.retention", "24h", "-storage.internal-segment-bytes", "2048"))
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	refuse := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := s.Queues().DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: "projects/" + server.DefaultProject + "/queues/q"}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("anonymous DeleteQueue: %v", err)
			}
		}
	}
	refuse(40) // several 2 KiB segments of records
	eventually(t, func() bool { return verifyTrail(t, admin, s).GetRecordsChecked() >= 40 }, "40 records in the trail")
	clock.Advance(48 * time.Hour)
	admin = bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword)) // the first one expired
	refuse(1)                                                                   // a write after the retention passed trims
	eventually(t, func() bool {
		v := verifyTrail(t, admin, s)
		if !v.GetIntact() {
			t.Fatalf("verify after retention: %v", v)
		}
		return v.GetFirstOffset() > 0 && v.GetRecordsChecked() < 41
	}, "the old records dropped")
	for _, r := range auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{EndTime: timestamppb.New(clock.Now().Add(-24 * time.Hour))}) {
		if r.GetOffset() == 0 {
			t.Fatalf("record 0 is still listed: %v", r)
		}
	}
}

// TestAuditRecordsDamagedData: damage a storage engine finds on disk goes
// into the trail (action storage/DamageFound, the log as the resource),
// beside the log line and the metrics.
func TestAuditRecordsDamagedData(t *testing.T) {
	s := testserver.Start(t, testserver.WithFlags("-storage.segment-bytes", "4096"))
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "damaged", PartitionCount: 1})
	for i := range 40 {
		s.Send(t, q, fmt.Sprintf("m-%03d-%s", i, strings.Repeat("x", 200)))
	}
	partDir := filepath.Join(s.DataDir, "storage", "q", q.GetId(), "0")
	s.RestartWith(t, func() {
		segs, err := filepath.Glob(filepath.Join(partDir, "*.log"))
		if err != nil || len(segs) < 2 {
			t.Fatalf("want sealed segments to damage, have %v (%v)", segs, err)
		}
		sort.Strings(segs)
		data, err := os.ReadFile(segs[0]) // sealed: damage in it is found on read or scrub
		if err != nil {
			t.Fatal(err)
		}
		for i := len(data) / 2; i < len(data)/2+16; i++ {
			data[i] ^= 0xff
		}
		if err := os.WriteFile(segs[0], data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	g := s.CreateGroup(t, q, "readers")
	s.Receive(t, g, 40, 30*time.Second) // reads through the damaged segment
	r := waitRecord(t, ctx, s, "storage/DamageFound", func(r *dmsv1.AuditRecord) bool {
		return strings.Contains(r.GetResource(), q.GetId())
	})
	if r.GetPrincipal() != "system" || r.GetReason() != "DATA_DAMAGED" || !strings.Contains(r.GetParameters(), "from_offset") {
		t.Fatalf("damage record %v", r)
	}
}
