package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// A signed DMS request by a user's access key, through the key's life:
// works, stops with the old secret once rotated, stops altogether when the
// user is deleted (with the user's tokens). The secret is stored sealed
// with the storage master key.
func TestIdentityCredentialLifecycle(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	t.Setenv("DMS_STORAGE_KEYS", "7:"+base64.StdEncoding.EncodeToString(key))
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, err := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	account := accounts.GetAccounts()[0].GetId()
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "carol"}, Password: "carol's password"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "carol"}, Password: "another password"}); rpcstatus.Reason(err) != "IDENTITY_ALREADY_EXISTS" {
		t.Fatalf("second carol: %v", err)
	}
	if _, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "dave"}, Password: "short"}); rpcstatus.Reason(err) != "IDENTITY_INVALID" {
		t.Fatalf("short password: %v", err)
	}
	carol := u.GetUser().GetId()
	if _, err := id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: server.DefaultProject, UserId: carol, Role: dmsv1.Role_ROLE_ADMIN}); err != nil {
		t.Fatal(err)
	}
	ak, err := id.CreateAccessKey(admin, &dmsv1.CreateAccessKeyRequest{UserId: carol})
	if err != nil {
		t.Fatal(err)
	}
	// Sealed in etcd: the stored bytes are not the secret.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdEndpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/dms/identity/access-keys/"+ak.GetAccessKey().GetAccessKey())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("access key record: %v %v", resp, err)
	}
	rec := &metadatav1.AccessKeyRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		t.Fatal(err)
	}
	if rec.GetSealingKeyId() != 7 || strings.Contains(string(rec.GetSecret()), ak.GetSecretKey()) {
		t.Fatalf("secret key stored unsealed: key id %d", rec.GetSealingKeyId())
	}

	list := func(ak, sk string) int {
		req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/v1.0/"+server.DefaultProject+"/queues?include_deadletter=true", nil)
		req.Header.Set("Content-Type", "application/json")
		signSDK(req, nil, ak, sk, time.Now())
		code, _ := do(t, req)
		return code
	}
	if code := list(ak.GetAccessKey().GetAccessKey(), ak.GetSecretKey()); code != http.StatusOK {
		t.Fatalf("signed list: %d", code)
	}
	if code := list(ak.GetAccessKey().GetAccessKey(), ak.GetSecretKey()+"x"); code != http.StatusUnauthorized {
		t.Fatalf("wrong SK: %d", code)
	}
	rotated, err := id.RotateAccessKey(admin, &dmsv1.RotateAccessKeyRequest{AccessKey: ak.GetAccessKey().GetAccessKey()})
	if err != nil {
		t.Fatal(err)
	}
	if code := list(ak.GetAccessKey().GetAccessKey(), ak.GetSecretKey()); code != http.StatusUnauthorized {
		t.Fatalf("old SK after rotation: %d", code)
	}
	if code := list(ak.GetAccessKey().GetAccessKey(), rotated.GetSecretKey()); code != http.StatusOK {
		t.Fatalf("new SK after rotation: %d", code)
	}
	// Keys survive a restart (sealed with the same storage key).
	s.Restart(t)
	if code := list(ak.GetAccessKey().GetAccessKey(), rotated.GetSecretKey()); code != http.StatusOK {
		t.Fatalf("SK after restart: %d", code)
	}
	admin = bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id = dmsv1.NewIdentityServiceClient(s.Conn)
	token, _, code := keystoneToken(t, s, "Default", "carol", "carol's password", server.DefaultProject)
	if code != http.StatusCreated {
		t.Fatalf("carol's token: %d", code)
	}
	// What carol may do, explained.
	ex, err := id.ExplainAccess(admin, &dmsv1.ExplainAccessRequest{UserId: carol, Action: "DeleteQueue", Resource: "projects/" + server.DefaultProject + "/queues/q"})
	if err != nil || !ex.GetAllowed() || ex.GetDecidedBy() != "role:admin@"+server.DefaultProject {
		t.Fatalf("explain: %v %v", ex, err)
	}
	// An API token rotated: the old one is refused at once, the new one works.
	api, err := id.CreateApiToken(admin, &dmsv1.CreateApiTokenRequest{UserId: carol, Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	parent := &dmsv1.ListQueuesRequest{Parent: "projects/" + server.DefaultProject}
	if _, err := s.Queues().ListQueues(bearer(ctx, api.GetToken()), parent); err != nil {
		t.Fatalf("API token: %v", err)
	}
	rotatedToken, err := id.RotateApiToken(admin, &dmsv1.RotateApiTokenRequest{Id: api.GetApiToken().GetId()})
	if err != nil || rotatedToken.GetApiToken().GetId() != api.GetApiToken().GetId() {
		t.Fatalf("rotate API token: %v %v", rotatedToken, err)
	}
	if _, err := s.Queues().ListQueues(bearer(ctx, api.GetToken()), parent); rpcstatus.Reason(err) != "CREDENTIAL_INVALID" {
		t.Fatalf("old API token after rotation: %v", err)
	}
	if _, err := s.Queues().ListQueues(bearer(ctx, rotatedToken.GetToken()), parent); err != nil {
		t.Fatalf("new API token: %v", err)
	}
	if _, err := id.DeleteUser(admin, &dmsv1.DeleteUserRequest{UserId: carol}); err != nil {
		t.Fatal(err)
	}
	if code := list(ak.GetAccessKey().GetAccessKey(), rotated.GetSecretKey()); code != http.StatusUnauthorized {
		t.Fatalf("SK of a deleted user: %d", code)
	}
	if _, err := s.Queues().ListQueues(bearer(ctx, token), &dmsv1.ListQueuesRequest{Parent: "projects/" + server.DefaultProject}); rpcstatus.Reason(err) != "CREDENTIAL_INVALID" {
		t.Fatalf("token of a deleted user: %v", err)
	}
	if _, err := s.Queues().ListQueues(bearer(ctx, rotatedToken.GetToken()), parent); rpcstatus.Reason(err) != "CREDENTIAL_INVALID" {
		t.Fatalf("API token of a deleted user: %v", err)
	}
}

// ExplainAccess says what decided, for allows and denials alike, and a
// user may ask only about themselves.
func TestExplainAccess(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	accounts, _ := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	account := accounts.GetAccounts()[0].GetId()
	u, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: "erin"}, Password: "erin's password"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: server.DefaultProject, UserId: u.GetUser().GetId(), Role: dmsv1.Role_ROLE_CONSUMER}); err != nil {
		t.Fatal(err)
	}
	erin := bearer(ctx, unscopedToken(t, s, "Default", "erin", "erin's password"))
	queue := "projects/" + server.DefaultProject + "/queues/orders"
	elsewhere, err := id.CreateProject(admin, &dmsv1.CreateProjectRequest{AccountId: account, Project: &dmsv1.Project{Name: "elsewhere"}})
	if err != nil {
		t.Fatal(err)
	}
	other := elsewhere.GetProject().GetId()
	for _, tc := range []struct {
		action, scope  string
		allowed        bool
		decidedBy, why string
	}{
		{"ConsumeMessages", "", true, "role:consumer@" + server.DefaultProject, ""},
		{"ProduceMessages", "", false, "default-deny", "PERMISSION_DENIED"},
		{"GetQueue", other, false, "scope:" + other, "PROJECT_SCOPE_MISMATCH"},
		// A scope naming no project is a credential that cannot be valid (a
		// deleted project's tokens stop working).
		{"GetQueue", "ffffffffffffffffffffffffffffffff", false, "authentication", "CREDENTIAL_INVALID"},
	} {
		ex, err := id.ExplainAccess(erin, &dmsv1.ExplainAccessRequest{Action: tc.action, Resource: queue, ScopeProjectId: tc.scope})
		if err != nil || ex.GetAllowed() != tc.allowed || ex.GetDecidedBy() != tc.decidedBy || ex.GetReason() != tc.why {
			t.Errorf("%s: %v %v, want allowed=%v by %s reason %q", tc.action, ex, err, tc.allowed, tc.decidedBy, tc.why)
		}
	}
	if _, err := id.ExplainAccess(erin, &dmsv1.ExplainAccessRequest{UserId: accounts.GetAccounts()[0].GetId(), Action: "GetQueue", Resource: queue}); err == nil {
		t.Error("erin explained another principal's access")
	}
	if _, err := id.ExplainAccess(erin, &dmsv1.ExplainAccessRequest{Action: "Fly", Resource: queue}); rpcstatus.Reason(err) != "IDENTITY_INVALID" {
		t.Errorf("unknown action: %v", err)
	}
	_ = testserver.Start
}
