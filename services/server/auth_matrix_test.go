package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// The authorization matrix: every principal × every action × every front
// end (gRPC, native REST, DMS v1.0 REST, AMQP 0-9-1), each cell done for real against a
// dmsd with authentication on, its outcome (allowed, or denied with which
// HTTP status / gRPC code and reason) compared with what the rules say.
// The expectations are written out here from the rules, not read
// from the authz package, so that a wrong rule there fails here.

type matrixPrincipal struct {
	name string
	// token is sent as authorization: Bearer on gRPC and native REST and as
	// X-Auth-Token on DMS REST; ak/sk sign the REST requests instead when
	// set (gRPC then uses token, which is the same user's and as revoked).
	token  string
	ak, sk string
	// allowed lists the actions the principal may do in project A; nil
	// for none, in which case denial is the expected refusal.
	allowed map[string]bool
	denial  string // the reason of every refusal
	// user and password log in over AMQP (the vhost is project A); a
	// principal without them (a token's) has no AMQP cells, except
	// anonymous, which logs in with no user name.
	user, password string
}

var matrixActions = []string{"CreateQueue", "ListQueues", "GetQueue", "DeleteQueue", "CreateGroup", "GetGroups", "DeleteGroup", "ProduceMessages", "ConsumeMessages"}

func actionSet(actions ...string) map[string]bool {
	m := map[string]bool{}
	for _, a := range actions {
		m[a] = true
	}
	return m
}

// matrixOutcome is what a cell did: allowed, or the reason it was refused.
type matrixOutcome struct {
	allowed bool
	status  int // HTTP status or gRPC code of a refusal
	reason  string
	detail  string
}

func TestAuthorizationMatrix(t *testing.T) {
	s := startAuth(t, testserver.WithFlags("-metadata.max-queues-per-project=1000", "-metadata.default-partitions=1"))
	ctx := context.Background()
	projectA := server.DefaultProject
	adminToken, _, code := keystoneToken(t, s, "Default", "admin", adminPassword, projectA)
	if code != http.StatusCreated {
		t.Fatalf("admin token: %d", code)
	}
	// The identity API with an unscoped API token of admin's.
	id := dmsv1.NewIdentityServiceClient(s.Conn)
	// A token scoped to a project acts in that project only: not on the
	// identity API, even for the operator's administrator.
	if _, err := id.CreateAccount(bearer(ctx, adminToken), &dmsv1.CreateAccountRequest{Account: &dmsv1.Account{Name: "other"}}); rpcstatus.Reason(err) != "PERMISSION_DENIED" {
		t.Fatalf("create account with a project-scoped token: %v", err)
	}
	if _, err := id.CreateApiToken(bearer(ctx, adminToken), &dmsv1.CreateApiTokenRequest{Description: "matrix"}); rpcstatus.Reason(err) != "PERMISSION_DENIED" {
		t.Fatalf("create API token with a project-scoped token: %v", err)
	}
	// admin's unscoped token: Keystone without a scope.
	unscoped := unscopedToken(t, s, "Default", "admin", adminPassword)
	actx := bearer(ctx, unscoped)
	acc, err := id.ListAccounts(actx, &dmsv1.ListAccountsRequest{})
	if err != nil || len(acc.GetAccounts()) != 1 {
		t.Fatalf("list accounts: %v %v", acc, err)
	}
	account := acc.GetAccounts()[0].GetId()
	projB, err := id.CreateProject(actx, &dmsv1.CreateProjectRequest{AccountId: account, Project: &dmsv1.Project{Name: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	projectB := projB.GetProject().GetId()
	projC, err := id.CreateProject(actx, &dmsv1.CreateProjectRequest{AccountId: account, Project: &dmsv1.Project{Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	projectC := projC.GetProject().GetId()

	newUser := func(name string, project string, role dmsv1.Role) string {
		u, err := id.CreateUser(actx, &dmsv1.CreateUserRequest{AccountId: account, User: &dmsv1.User{Name: name}, Password: "password-of-" + name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := id.GrantRole(actx, &dmsv1.GrantRoleRequest{ProjectId: project, UserId: u.GetUser().GetId(), Role: role}); err != nil {
			t.Fatal(err)
		}
		return u.GetUser().GetId()
	}
	apiToken := func(user, project string, expire time.Time) string {
		req := &dmsv1.CreateApiTokenRequest{UserId: user, ProjectId: project}
		if !expire.IsZero() {
			req.ExpireTime = timestamppb.New(expire)
		}
		resp, err := id.CreateApiToken(actx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetToken()
	}
	aAdmin := newUser("a-admin", projectA, dmsv1.Role_ROLE_ADMIN)
	aProducer := newUser("a-producer", projectA, dmsv1.Role_ROLE_PRODUCER)
	aConsumer := newUser("a-consumer", projectA, dmsv1.Role_ROLE_CONSUMER)
	aViewer := newUser("a-viewer", projectA, dmsv1.Role_ROLE_VIEWER)
	bAdmin := newUser("b-admin", projectB, dmsv1.Role_ROLE_ADMIN)
	cAdmin := newUser("c-admin", projectC, dmsv1.Role_ROLE_ADMIN)

	key, err := id.CreateAccessKey(actx, &dmsv1.CreateAccessKeyRequest{UserId: aProducer, Description: "matrix"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := id.CreateAccessKey(actx, &dmsv1.CreateAccessKeyRequest{UserId: aAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.DeleteAccessKey(actx, &dmsv1.DeleteAccessKeyRequest{AccessKey: revoked.GetAccessKey().GetAccessKey()}); err != nil {
		t.Fatal(err)
	}
	revokedToken := apiToken(aAdmin, "", time.Time{})
	listed, err := id.ListApiTokens(actx, &dmsv1.ListApiTokensRequest{UserId: aAdmin})
	if err != nil || len(listed.GetApiTokens()) != 1 {
		t.Fatalf("list API tokens: %v %v", listed, err)
	}
	if _, err := id.RevokeApiToken(actx, &dmsv1.RevokeApiTokenRequest{Id: listed.GetApiTokens()[0].GetId()}); err != nil {
		t.Fatal(err)
	}
	bScoped, _, code := keystoneToken(t, s, "Default", "b-admin", "password-of-b-admin", projectB)
	if code != http.StatusCreated {
		t.Fatalf("b-admin token: %d", code)
	}
	if _, _, code := keystoneToken(t, s, "Default", "b-admin", "password-of-b-admin", projectA); code != http.StatusUnauthorized {
		t.Fatalf("b-admin got a token scoped to project A: %d", code)
	}
	cScoped, _, code := keystoneToken(t, s, "Default", "c-admin", "password-of-c-admin", projectC)
	if code != http.StatusCreated {
		t.Fatalf("c-admin token: %d", code)
	}

	all := actionSet(matrixActions...)
	read := []string{"ListQueues", "GetQueue", "GetGroups"}
	sharedActions := []string{"GetQueue", "GetGroups", "ProduceMessages", "ConsumeMessages"}
	shared := actionSet(sharedActions...)
	principals := []matrixPrincipal{
		{name: "operator-admin", token: unscoped, allowed: all, user: "admin", password: adminPassword},
		{name: "operator-admin-scoped-A", token: adminToken, allowed: all},
		{name: "A-admin", token: apiToken(aAdmin, "", time.Time{}), allowed: all, user: "a-admin", password: "password-of-a-admin"},
		{name: "A-producer", token: apiToken(aProducer, projectA, time.Time{}), allowed: actionSet(append(read, "ProduceMessages")...), user: "a-producer", password: "password-of-a-producer"},
		{name: "A-producer-aksk", token: apiToken(aProducer, "", time.Time{}), ak: key.GetAccessKey().GetAccessKey(), sk: key.GetSecretKey(), allowed: actionSet(append(read, "ProduceMessages")...)},
		{name: "A-consumer", token: apiToken(aConsumer, "", time.Time{}), allowed: actionSet(append(read, "ConsumeMessages")...), user: "a-consumer", password: "password-of-a-consumer"},
		{name: "A-viewer", token: apiToken(aViewer, "", time.Time{}), allowed: actionSet(read...), user: "a-viewer", password: "password-of-a-viewer"},
		// A password that is wrong: refused at login (AMQP only).
		{name: "A-admin-wrong-password", allowed: nil, denial: "CREDENTIAL_INVALID", user: "a-admin", password: "not-the-password"},
		// Every queue of the matrix is shared with project B (its policy
		// allows these actions to projects/B), none with project C.
		{name: "B-admin-shared", token: apiToken(bAdmin, "", time.Time{}), allowed: shared, denial: "PERMISSION_DENIED", user: "b-admin", password: "password-of-b-admin"},
		{name: "B-admin-scoped-B-shared", token: bScoped, allowed: shared, denial: "PROJECT_SCOPE_MISMATCH"},
		{name: "C-admin-not-shared", token: apiToken(cAdmin, "", time.Time{}), denial: "PERMISSION_DENIED", user: "c-admin", password: "password-of-c-admin"},
		{name: "C-admin-scoped-C-not-shared", token: cScoped, denial: "PROJECT_SCOPE_MISMATCH"},
		{name: "anonymous", denial: "UNAUTHENTICATED"},
		{name: "revoked-access-key", token: revokedToken, ak: revoked.GetAccessKey().GetAccessKey(), sk: revoked.GetSecretKey(), denial: "CREDENTIAL_INVALID"},
		{name: "expired-token", token: apiToken(aAdmin, "", time.Now().Add(-time.Minute)), denial: "CREDENTIAL_EXPIRED"},
	}

	// The cells' resources are made by the cluster itself (the internal
	// listener, as another role would), so that every cell starts alike.
	sys := dmsv1.NewQueueServiceClient(s.Internal)
	var seq atomic.Int64
	fixture := func() (*dmsv1.Queue, *dmsv1.ConsumerGroup) {
		n := seq.Add(1)
		q, err := sys.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + projectA, Queue: &dmsv1.Queue{DisplayName: fmt.Sprintf("q%d", n)}})
		if err != nil {
			t.Fatal(err)
		}
		g, err := sys.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetQueue().GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g"}})
		if err != nil {
			t.Fatal(err)
		}
		policy := &dmsv1.QueuePolicy{Statements: []*dmsv1.PolicyStatement{{
			Effect: dmsv1.PolicyEffect_POLICY_EFFECT_ALLOW, Principals: []string{"projects/" + projectB}, Actions: sharedActions,
		}}}
		if _, err := id.SetQueuePolicy(actx, &dmsv1.SetQueuePolicyRequest{Queue: q.GetQueue().GetName(), Policy: policy}); err != nil {
			t.Fatal(err)
		}
		return q.GetQueue(), g.GetGroup()
	}
	amqps := &amqpCells{conns: map[string]*amqp091.Connection{}}
	defer amqps.close()
	frontEnds := map[string]func(p matrixPrincipal, action string) matrixOutcome{
		"grpc": func(p matrixPrincipal, action string) matrixOutcome {
			return grpcCell(t, s, p, action, fixture)
		},
		"native-rest": func(p matrixPrincipal, action string) matrixOutcome {
			return restCell(t, s, p, action, fixture, false)
		},
		"dms-rest": func(p matrixPrincipal, action string) matrixOutcome {
			return restCell(t, s, p, action, fixture, true)
		},
		"amqp": func(p matrixPrincipal, action string) matrixOutcome {
			return amqps.cell(t, s, p, action, fixture)
		},
	}

	unexpected, cells := 0, 0
	for _, p := range principals {
		for _, fe := range []string{"grpc", "native-rest", "dms-rest", "amqp"} {
			for _, action := range matrixActions {
				if fe == "amqp" && (amqpActions[action] == "" || (p.user == "" && p.name != "anonymous")) {
					continue
				}
				if fe != "amqp" && p.token == "" && p.name != "anonymous" {
					continue
				}
				cells++
				got := frontEnds[fe](p, action)
				want := p.allowed[action]
				switch {
				case got.allowed && !want:
					unexpected++
					t.Errorf("UNEXPECTED ALLOW: %s %s via %s", p.name, action, fe)
				case !got.allowed && want:
					unexpected++
					t.Errorf("UNEXPECTED DENY: %s %s via %s: %d %s %s", p.name, action, fe, got.status, got.reason, got.detail)
				case !got.allowed:
					wantReason := p.denial
					if wantReason == "" {
						wantReason = "PERMISSION_DENIED"
					}
					if got.reason != wantReason || got.status != refusalStatus(fe, wantReason) {
						unexpected++
						t.Errorf("%s %s via %s: refused with %d %s (%s), want %d %s", p.name, action, fe, got.status, got.reason, got.detail, refusalStatus(fe, wantReason), wantReason)
					}
				}
			}
		}
	}
	t.Logf("authorization matrix: %d cells, %d unexpected", cells, unexpected)
}

// refusalStatus is the status a refusal must carry on a front end.
func refusalStatus(frontEnd, reason string) int {
	if frontEnd == "amqp" {
		// ACCESS_REFUSED: on the connection at login, else on the channel.
		return 403
	}
	unauthenticated := reason == "UNAUTHENTICATED" || reason == "CREDENTIAL_INVALID" || reason == "CREDENTIAL_EXPIRED"
	if frontEnd == "grpc" {
		if unauthenticated {
			return int(codes.Unauthenticated)
		}
		return int(codes.PermissionDenied)
	}
	if unauthenticated {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

func unscopedToken(t *testing.T, s *testserver.Server, domain, user, password string) string {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"password":%q,"domain":{"name":%q}}}}}}`, user, password, domain)
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("unscoped token: %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Subject-Token")
}

func grpcCell(t *testing.T, s *testserver.Server, p matrixPrincipal, action string, fixture func() (*dmsv1.Queue, *dmsv1.ConsumerGroup)) matrixOutcome {
	q, g := fixture()
	ctx := context.Background()
	if p.token != "" {
		ctx = bearer(ctx, p.token)
	}
	project := strings.Split(q.GetName(), "/")[1]
	var err error
	switch action {
	case "CreateQueue":
		_, err = s.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: &dmsv1.Queue{DisplayName: q.GetDisplayName() + "-new"}})
	case "ListQueues":
		_, err = s.Queues().ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: "projects/" + project})
	case "GetQueue":
		_, err = s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	case "DeleteQueue":
		_, err = s.Queues().DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: q.GetName()})
	case "CreateGroup":
		_, err = s.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g2"}})
	case "GetGroups":
		_, err = s.Queues().ListConsumerGroups(ctx, &dmsv1.ListConsumerGroupsRequest{Parent: q.GetName()})
	case "DeleteGroup":
		_, err = s.Queues().DeleteConsumerGroup(ctx, &dmsv1.DeleteConsumerGroupRequest{Name: g.GetName()})
	case "ProduceMessages":
		_, err = s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("x")}}})
	case "ConsumeMessages":
		_, err = s.Consumer().ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 1})
	default:
		t.Fatalf("no gRPC call for %s", action)
	}
	if err == nil {
		return matrixOutcome{allowed: true}
	}
	code := status.Code(err)
	if code != codes.Unauthenticated && code != codes.PermissionDenied {
		t.Fatalf("gRPC %s failed for another reason than authorization: %v", action, err)
	}
	return matrixOutcome{status: int(code), reason: rpcstatus.Reason(err), detail: status.Convert(err).Message()}
}

func restCell(t *testing.T, s *testserver.Server, p matrixPrincipal, action string, fixture func() (*dmsv1.Queue, *dmsv1.ConsumerGroup), dms bool) matrixOutcome {
	q, g := fixture()
	parts := strings.Split(q.GetName(), "/")
	project, queueID := parts[1], q.GetId()
	groupID := g.GetId()
	var method, path, body string
	if dms {
		base := "/v1.0/" + project + "/queues"
		switch action {
		case "CreateQueue":
			method, path, body = "POST", base, fmt.Sprintf(`{"name":%q}`, q.GetDisplayName()+"-new")
		case "ListQueues":
			method, path = "GET", base
		case "GetQueue":
			method, path = "GET", base+"/"+queueID
		case "DeleteQueue":
			method, path = "DELETE", base+"/"+queueID
		case "CreateGroup":
			method, path, body = "POST", base+"/"+queueID+"/groups", `{"groups":[{"name":"g2"}]}`
		case "GetGroups":
			method, path = "GET", base+"/"+queueID+"/groups"
		case "DeleteGroup":
			method, path = "DELETE", base+"/"+queueID+"/groups/"+groupID
		case "ProduceMessages":
			method, path, body = "POST", base+"/"+queueID+"/messages", `{"messages":[{"body":"x"}]}`
		case "ConsumeMessages":
			method, path = "GET", base+"/"+queueID+"/groups/"+groupID+"/messages?max_msgs=1"
		}
	} else {
		base := "/v1/projects/" + project + "/queues"
		switch action {
		case "CreateQueue":
			method, path, body = "POST", base, fmt.Sprintf(`{"displayName":%q}`, q.GetDisplayName()+"-new")
		case "ListQueues":
			method, path = "GET", base
		case "GetQueue":
			method, path = "GET", base+"/"+queueID
		case "DeleteQueue":
			method, path = "DELETE", base+"/"+queueID
		case "CreateGroup":
			method, path, body = "POST", base+"/"+queueID+"/groups", `{"displayName":"g2"}`
		case "GetGroups":
			method, path = "GET", base+"/"+queueID+"/groups"
		case "DeleteGroup":
			method, path = "DELETE", base+"/"+queueID+"/groups/"+groupID
		case "ProduceMessages":
			method, path, body = "POST", base+"/"+queueID+"/messages:send", `{"messages":[{"body":"eA=="}]}`
		case "ConsumeMessages":
			method, path, body = "POST", base+"/"+queueID+"/groups/"+groupID+"/messages:receive", `{"maxMessages":1}`
		}
	}
	if method == "" {
		t.Fatalf("no REST call for %s", action)
	}
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case p.ak != "":
		signSDK(req, []byte(body), p.ak, p.sk, time.Now())
	case p.token != "" && dms:
		req.Header.Set("X-Auth-Token", p.token)
	case p.token != "":
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	status, out := do(t, req)
	if status < 300 {
		return matrixOutcome{allowed: true}
	}
	reason, _ := out["reason"].(string)
	if details, ok := out["details"].([]any); ok && len(details) > 0 {
		reason, _ = details[0].(map[string]any)["reason"].(string)
	}
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Fatalf("%s %s failed for another reason than authorization: %d %v", method, path, status, out)
	}
	return matrixOutcome{status: status, reason: reason, detail: fmt.Sprint(out["message"], out["error_msg"])}
}

// amqpActions is the AMQP method each action of the matrix is done with;
// consumer groups have no AMQP counterpart.
var amqpActions = map[string]string{
	"CreateQueue": "queue.declare", "ListQueues": "exchange.declare passive", "GetQueue": "queue.declare passive",
	"DeleteQueue": "queue.delete", "ProduceMessages": "basic.publish", "ConsumeMessages": "basic.get",
}

// amqpCells does the matrix's cells over AMQP 0-9-1, one connection per
// principal (vhost: project A), one channel per cell: a refusal closes the
// channel (or, at login, the connection) with 403 ACCESS_REFUSED and DMS's
// reason first in the reply text.
type amqpCells struct {
	conns map[string]*amqp091.Connection
}

func (a *amqpCells) close() {
	for _, c := range a.conns {
		_ = c.Close()
	}
}

func amqpOutcome(t *testing.T, err error) matrixOutcome {
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != amqp091.AccessRefused {
		t.Fatalf("AMQP failed for another reason than authorization: %v", err)
	}
	reason, _, _ := strings.Cut(strings.TrimPrefix(ae.Reason, "ACCESS_REFUSED - "), ":")
	return matrixOutcome{status: ae.Code, reason: reason, detail: ae.Reason}
}

func (a *amqpCells) cell(t *testing.T, s *testserver.Server, p matrixPrincipal, action string, fixture func() (*dmsv1.Queue, *dmsv1.ConsumerGroup)) matrixOutcome {
	q, _ := fixture()
	project := strings.Split(q.GetName(), "/")[1]
	conn := a.conns[p.name]
	if conn == nil {
		var err error
		conn, err = amqp091.DialConfig("amqp://"+s.AMQPAddr+"/", amqp091.Config{Vhost: project,
			SASL: []amqp091.Authentication{&amqp091.PlainAuth{Username: p.user, Password: p.password}}})
		if err != nil {
			return amqpOutcome(t, err)
		}
		a.conns[p.name] = conn
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	name := q.GetDisplayName()
	switch action {
	case "CreateQueue":
		_, err = ch.QueueDeclare(name+"-new", true, false, false, false, nil)
	case "ListQueues":
		err = ch.ExchangeDeclarePassive("amq.direct", "direct", true, false, false, false, nil)
	case "GetQueue":
		_, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
	case "DeleteQueue":
		_, err = ch.QueueDelete(name, false, false, false)
	case "ProduceMessages":
		if err = ch.Confirm(false); err != nil {
			break
		}
		var conf *amqp091.DeferredConfirmation
		conf, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", name, false, false, amqp091.Publishing{Body: []byte("x")})
		if err != nil {
			break
		}
		// A refusal closes the channel, which completes the confirmation
		// unacked.
		<-conf.Done()
		if !conf.Acked() {
			err = errors.New("publish not confirmed")
			if e := <-closed; e != nil {
				err = e
			}
		}
	case "ConsumeMessages":
		_, _, err = ch.Get(name, false)
	default:
		t.Fatalf("no AMQP method for %s", action)
	}
	if err == nil {
		return matrixOutcome{allowed: true}
	}
	return amqpOutcome(t, err)
}
