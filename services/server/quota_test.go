package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// requireRefused checks a gRPC refusal's code and reason.
func requireRefused(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	require.Equal(t, code, status.Code(err), "%v", err)
	require.Equal(t, reason, rpcstatus.Reason(err), "%v", err)
}

// dmsCall makes a DMS v1.0 REST call and returns the status and the body.
func dmsCall(t *testing.T, s *testserver.Server, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

// requireDMSError checks a DMS REST refusal's HTTP status and DMS code.
func requireDMSError(t *testing.T, status int, body map[string]any, wantStatus, wantCode int) {
	t.Helper()
	require.Equal(t, wantStatus, status, "%v", body)
	require.Equal(t, fmt.Sprint(wantCode), body["error_code"], "%v", body)
}

// A project's own quotas, set through the native admin API, are enforced
// on every door with DMS's error codes: queues per project, groups per
// queue, message size and the send rate; another project keeps the
// defaults and is never slowed by the first; refused sends store nothing.
func TestProjectQuotas(t *testing.T) {
	clock := testserver.NewClock(time.Now())
	s := testserver.Start(t, testserver.WithClock(clock))
	ctx := context.Background()
	p, other := server.DefaultProject, "fedcba9876543210fedcba9876543210"
	name := "projects/" + p

	got, err := s.Queues().GetProjectQuotas(ctx, &dmsv1.GetProjectQuotasRequest{Name: name})
	require.NoError(t, err)
	require.Empty(t, cmpQuotas(&dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 512 * 1024}, got.GetQuotas()), "the defaults")
	require.Empty(t, got.GetProjectSet())

	for _, bad := range []*dmsv1.ProjectQuotas{nil, {MaxQueues: -1}, {MaxGroupsPerQueue: 101}, {MaxMessageBytes: 512*1024 + 1}, {SendMessagesPerSecond: -5}} {
		_, err := s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: name, Quotas: bad})
		requireRefused(t, err, codes.InvalidArgument, "REQUEST_INVALID")
	}
	set, err := s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: name,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 2, MaxGroupsPerQueue: 1, MaxMessageBytes: 1000, SendMessagesPerSecond: 5}})
	require.NoError(t, err)
	require.Empty(t, cmpQuotas(&dmsv1.ProjectQuotas{MaxQueues: 2, MaxGroupsPerQueue: 1, MaxMessageBytes: 1000, SendMessagesPerSecond: 5}, set.GetQuotas()))
	got, err = s.Queues().GetProjectQuotas(ctx, &dmsv1.GetProjectQuotasRequest{Name: name})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"max_queues", "max_groups_per_queue", "max_message_bytes", "send_messages_per_second"}, got.GetProjectSet())

	// Queues per project: DMS 10240020.
	q := s.CreateQueue(t, p, &dmsv1.Queue{DisplayName: "q1"})
	s.CreateQueue(t, p, &dmsv1.Queue{DisplayName: "q2"})
	_, err = s.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: name, Queue: &dmsv1.Queue{DisplayName: "q3"}})
	requireRefused(t, err, codes.ResourceExhausted, "QUEUE_QUOTA_EXCEEDED")
	code, body := dmsCall(t, s, http.MethodPost, "/v1.0/"+p+"/queues", `{"name":"q3"}`)
	requireDMSError(t, code, body, http.StatusBadRequest, 10240020)
	code, body = dmsCall(t, s, http.MethodGet, "/v1.0/"+p+"/quotas/dms", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{map[string]any{"type": "queue", "quota": 2.0, "used": 2.0, "min": 0.0, "max": 10000.0}}, body["quotas"].(map[string]any)["resources"])
	// The other project has the defaults.
	for i := range 3 {
		s.CreateQueue(t, other, &dmsv1.Queue{DisplayName: fmt.Sprint("o", i)})
	}

	// Groups per queue: DMS 10240019.
	g := s.CreateGroup(t, q, "g1")
	_, err = s.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g2"}})
	requireRefused(t, err, codes.ResourceExhausted, "GROUP_QUOTA_EXCEEDED")
	code, body = dmsCall(t, s, http.MethodPost, "/v1.0/"+p+"/queues/"+q.GetId()+"/groups", `{"groups":[{"name":"g2"}]}`)
	requireDMSError(t, code, body, http.StatusBadRequest, 10240019)

	// Message size: DMS 10540011.
	send := func(bodies ...string) error {
		msgs := make([]*dmsv1.Message, len(bodies))
		for i, b := range bodies {
			msgs[i] = &dmsv1.Message{Body: []byte(b)}
		}
		_, err := s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
		return err
	}
	requireRefused(t, send(strings.Repeat("x", 1001)), codes.InvalidArgument, "MESSAGE_TOO_LARGE")
	code, body = dmsCall(t, s, http.MethodPost, "/v1.0/"+p+"/queues/"+q.GetId()+"/messages", `{"messages":[{"body":"`+strings.Repeat("x", 1001)+`"}]}`)
	requireDMSError(t, code, body, http.StatusBadRequest, 10540011)

	// Send rate: 5 messages/s, a bucket of one second's worth. RATE_LIMITED,
	// DMS 10240407 with HTTP 429; the other project sends on meanwhile;
	// a second later the project sends again.
	require.NoError(t, send("1", "2", "3", "4", "5"))
	requireRefused(t, send("6"), codes.ResourceExhausted, "RATE_LIMITED")
	code, body = dmsCall(t, s, http.MethodPost, "/v1.0/"+p+"/queues/"+q.GetId()+"/messages", `{"messages":[{"body":"6"}]}`)
	requireDMSError(t, code, body, http.StatusTooManyRequests, 10240407)
	o := s.CreateQueue(t, other, &dmsv1.Queue{DisplayName: "unlimited"})
	for range 10 {
		s.Send(t, o, "o")
	}
	clock.Advance(time.Second)
	require.NoError(t, send("6"))

	// What was refused was not stored.
	var bodies []string
	require.Eventually(t, func() bool {
		for _, m := range s.Receive(t, g, 10, 30*time.Second) {
			bodies = append(bodies, string(m.GetMessage().GetBody()))
		}
		return len(bodies) >= 6
	}, 10*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"1", "2", "3", "4", "5", "6"}, bodies)

	// Back to the defaults: 0 everywhere.
	_, err = s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: name, Quotas: &dmsv1.ProjectQuotas{}})
	require.NoError(t, err)
	s.CreateQueue(t, p, &dmsv1.Queue{DisplayName: "q3"})
	require.NoError(t, send("7", "8", "9", "10", "11", "12", strings.Repeat("x", 1001)))
}

func cmpQuotas(want, got *dmsv1.ProjectQuotas) string {
	if proto.Equal(want, got) {
		return ""
	}
	return fmt.Sprintf("want %v, got %v", want, got)
}

// Only the operator's administrators set quotas: a project's own
// administrator, with a token scoped to it, may read them but not raise
// them; the change is in the audit trail.
func TestProjectQuotasNeedTheOperator(t *testing.T) {
	s := startAuth(t)
	p := server.DefaultProject
	scoped, _, code := keystoneToken(t, s, "Default", "admin", adminPassword, p)
	require.Equal(t, http.StatusCreated, code)
	ctx := bearer(context.Background(), scoped)
	_, err := s.Queues().GetProjectQuotas(ctx, &dmsv1.GetProjectQuotasRequest{Name: "projects/" + p})
	require.NoError(t, err)
	_, err = s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + p, Quotas: &dmsv1.ProjectQuotas{MaxQueues: 100}})
	requireRefused(t, err, codes.PermissionDenied, "PERMISSION_DENIED")

	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":"` + adminPassword + `","domain":{"name":"Default"}}}}}}`
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_ = resp.Body.Close()
	unscoped := resp.Header.Get("X-Subject-Token")
	_, err = s.Queues().UpdateProjectQuotas(bearer(context.Background(), unscoped), &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + p, Quotas: &dmsv1.ProjectQuotas{MaxQueues: 100}})
	require.NoError(t, err)
	admin := bearer(context.Background(), unscoped)
	require.Eventually(t, func() bool {
		return len(auditRecords(t, admin, s, &dmsv1.ListAuditRecordsRequest{Action: "UpdateProjectQuotas"})) == 2 // the refused one and the change
	}, 10*time.Second, 20*time.Millisecond)
}

// max_stored_bytes: once the project's partitions hold as many bytes as
// its quota (measured every few seconds), sends are refused with
// STORAGE_QUOTA_EXCEEDED, DMS 400 / 10240020, and store nothing; the
// default (0) lifts it.
func TestStoredBytesQuota(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	p := server.DefaultProject
	q := s.CreateQueue(t, p, &dmsv1.Queue{DisplayName: "full"})
	_, err := s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + p, Quotas: &dmsv1.ProjectQuotas{MaxStoredBytes: 64 << 10}})
	require.NoError(t, err)
	body := []byte(strings.Repeat("x", 8<<10))
	var err2 error
	sent := 0
	require.Eventually(t, func() bool {
		_, err2 = s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: body}}})
		if err2 == nil {
			sent++
		}
		return err2 != nil
	}, 30*time.Second, 20*time.Millisecond, "sends are refused once 64 KiB are stored")
	requireRefused(t, err2, codes.ResourceExhausted, "STORAGE_QUOTA_EXCEEDED")
	require.GreaterOrEqual(t, sent, 8, "64 KiB of 8 KiB messages were taken first")
	code, resp := dmsCall(t, s, http.MethodPost, "/v1.0/"+p+"/queues/"+q.GetId()+"/messages", `{"messages":[{"body":"x"}]}`)
	requireDMSError(t, code, resp, http.StatusBadRequest, 10240020)
	got, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, sent, got.GetQueue().GetMessageCount(), "refused sends stored nothing")

	_, err = s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + p, Quotas: &dmsv1.ProjectQuotas{}})
	require.NoError(t, err)
	s.Send(t, q, "after")
}
