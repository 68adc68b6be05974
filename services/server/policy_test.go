package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
)

// A queue shared with another account's project by its policy: usable
// there through gRPC and DMS REST; a deny statement beats a role; only the
// project's admins set policies; malformed policies are refused.
func TestQueuePolicySharing(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	admin := bearer(ctx, unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	acme, err := id.CreateAccount(admin, &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := id.CreateProject(admin, &dmsv1.CreateProjectRequest{AccountId: acme.GetAccount().GetId(), Project: &dmsv1.Project{Name: "analytics"}})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: acme.GetAccount().GetId(), User: &dmsv1.User{Name: "bob"}, Password: "bob's password"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: pb.GetProject().GetId(), UserId: bob.GetUser().GetId(), Role: dmsv1.Role_ROLE_CONSUMER}); err != nil {
		t.Fatal(err)
	}
	accounts, _ := id.ListAccounts(admin, &dmsv1.ListAccountsRequest{})
	var defaultAccount string
	for _, a := range accounts.GetAccounts() {
		if a.GetName() == "Default" {
			defaultAccount = a.GetId()
		}
	}
	viewer, err := id.CreateUser(admin, &dmsv1.CreateUserRequest{AccountId: defaultAccount, User: &dmsv1.User{Name: "vera"}, Password: "vera's password"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.GrantRole(admin, &dmsv1.GrantRoleRequest{ProjectId: server.DefaultProject, UserId: viewer.GetUser().GetId(), Role: dmsv1.Role_ROLE_VIEWER}); err != nil {
		t.Fatal(err)
	}
	orders, err := s.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "orders"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.Queues().CreateConsumerGroup(admin, &dmsv1.CreateConsumerGroupRequest{Parent: orders.GetQueue().GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "billing"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Producer().SendMessages(admin, &dmsv1.SendMessagesRequest{Queue: orders.GetQueue().GetName(), Messages: []*dmsv1.Message{{Body: []byte("42")}}}); err != nil {
		t.Fatal(err)
	}
	// The policy names the queue by display name.
	byName := "projects/" + server.DefaultProject + "/queues/orders"
	policy := &dmsv1.QueuePolicy{Statements: []*dmsv1.PolicyStatement{
		{Effect: dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW, Principals: []string{"projects/" + pb.GetProject().GetId()}, Actions: []string{"GetQueue", "GetGroups", "ConsumeMessages"}},
		{Effect: dmsv1.PolicyEffect_POLICY_EFFECT_DENY, Principals: []string{"users/" + viewer.GetUser().GetId()}, Actions: []string{"GetQueue"}},
	}}
	vera := bearer(ctx, unscopedToken(t, s, "Default", "vera", "vera's password"))
	if _, err := id.SetQueuePolicy(vera, &dmsv1.SetQueuePolicyRequest{Queue: byName, Policy: policy}); rpcstatus.Reason(err) != "PERMISSION_DENIED" {
		t.Fatalf("a viewer set a policy: %v", err)
	}
	for _, bad := range []*dmsv1.PolicyStatement{
		{Effect: dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW, Principals: []string{"everyone"}, Actions: []string{"GetQueue"}},
		{Effect: dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW, Principals: []string{"projects/" + pb.GetProject().GetId()}, Actions: []string{"DeleteQueue"}},
		{Principals: []string{"projects/" + pb.GetProject().GetId()}, Actions: []string{"GetQueue"}},
	} {
		if _, err := id.SetQueuePolicy(admin, &dmsv1.SetQueuePolicyRequest{Queue: byName, Policy: &dmsv1.QueuePolicy{Statements: []*dmsv1.PolicyStatement{bad}}}); rpcstatus.Reason(err) != "IDENTITY_INVALID" {
			t.Errorf("policy %v: %v", bad, err)
		}
	}
	if _, err := id.SetQueuePolicy(admin, &dmsv1.SetQueuePolicyRequest{Queue: byName, Policy: policy}); err != nil {
		t.Fatal(err)
	}
	got, err := id.GetQueuePolicy(admin, &dmsv1.GetQueuePolicyRequest{Queue: orders.GetQueue().GetName()})
	if err != nil || len(got.GetPolicy().GetStatements()) != 2 {
		t.Fatalf("get policy: %v %v", got, err)
	}

	// bob, scoped to his own project, uses the shared queue.
	token, _, code := keystoneToken(t, s, "acme", "bob", "bob's password", pb.GetProject().GetId())
	if code != http.StatusCreated {
		t.Fatalf("bob's token: %d", code)
	}
	bobCtx := bearer(ctx, token)
	recv, err := s.Consumer().ReceiveMessages(bobCtx, &dmsv1.ReceiveMessagesRequest{Group: g.GetGroup().GetName(), MaxMessages: 10})
	if err != nil || len(recv.GetMessages()) != 1 {
		t.Fatalf("bob receives from the shared queue: %v %v", recv, err)
	}
	if _, err := s.Producer().SendMessages(bobCtx, &dmsv1.SendMessagesRequest{Queue: orders.GetQueue().GetName(), Messages: []*dmsv1.Message{{Body: []byte("x")}}}); rpcstatus.Reason(err) != "PROJECT_SCOPE_MISMATCH" {
		t.Fatalf("bob sends to the shared queue (not shared for that): %v", err)
	}
	if _, err := s.Queues().GetQueue(bobCtx, &dmsv1.GetQueueRequest{Name: other.GetQueue().GetName()}); rpcstatus.Reason(err) != "PROJECT_SCOPE_MISMATCH" {
		t.Fatalf("bob reads a queue not shared: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/v1.0/"+server.DefaultProject+"/queues/"+orders.GetQueue().GetId(), nil)
	req.Header.Set("X-Auth-Token", token)
	if code, body := do(t, req); code != http.StatusOK || body["name"] != "orders" {
		t.Fatalf("bob reads the shared queue over DMS REST: %d %v", code, body)
	}
	// Deny beats vera's viewer role, for what it names only.
	if _, err := s.Queues().GetQueue(vera, &dmsv1.GetQueueRequest{Name: byName}); rpcstatus.Reason(err) != "PERMISSION_DENIED" || !strings.Contains(err.Error(), "statement 1") {
		t.Fatalf("vera reads the queue despite the deny: %v", err)
	}
	if _, err := s.Queues().ListConsumerGroups(vera, &dmsv1.ListConsumerGroupsRequest{Parent: byName}); err != nil {
		t.Fatalf("vera lists groups (not denied): %v", err)
	}
	ex, err := id.ExplainAccess(admin, &dmsv1.ExplainAccessRequest{UserId: bob.GetUser().GetId(), ScopeProjectId: pb.GetProject().GetId(), Action: "ConsumeMessages", Resource: byName})
	if err != nil || !ex.GetAllowed() || ex.GetDecidedBy() != "policy:"+byName+"#0" {
		t.Fatalf("explain bob: %v %v", ex, err)
	}
	// Removing the policy unshares the queue at once.
	if _, err := id.SetQueuePolicy(admin, &dmsv1.SetQueuePolicyRequest{Queue: byName, Policy: &dmsv1.QueuePolicy{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer().ReceiveMessages(bobCtx, &dmsv1.ReceiveMessagesRequest{Group: g.GetGroup().GetName(), MaxMessages: 10}); rpcstatus.Reason(err) != "PROJECT_SCOPE_MISMATCH" {
		t.Fatalf("bob receives after the policy is gone: %v", err)
	}
}

// TestIdentityWritesThatChangeNothingAnswer: a policy cleared on a queue
// that has none, and an account created twice, change no identity key; they
// used to wait for the identity cache to reach etcd's revision — moved on by
// the queue writes, which that cache never hears of — and never answered.
func TestIdentityWritesThatChangeNothingAnswer(t *testing.T) {
	s := startAuth(t)
	admin := bearer(context.Background(), unscopedToken(t, s, "Default", "admin", adminPassword))
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	if _, err := id.CreateAccount(admin, &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "twice"}}); err != nil {
		t.Fatal(err)
	}
	q, err := s.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "unshared"}})
	if err != nil {
		t.Fatal(err)
	}
	// Bounded only so that the old behaviour fails instead of hanging.
	ctx, cancel := context.WithTimeout(admin, 20*time.Second)
	defer cancel()
	if _, err := id.SetQueuePolicy(ctx, &dmsv1.SetQueuePolicyRequest{Queue: q.GetQueue().GetName(), Policy: &dmsv1.QueuePolicy{}}); err != nil {
		t.Fatalf("clearing a policy the queue does not have: %v", err)
	}
	if _, err := id.CreateAccount(ctx, &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "twice"}}); rpcstatus.Reason(err) != "IDENTITY_ALREADY_EXISTS" {
		t.Fatalf("creating an account again: %v, want IDENTITY_ALREADY_EXISTS", err)
	}
}
