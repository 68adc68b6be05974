package msgtrace_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

const project = "0123456789abcdef0123456789abcdef"

var bg = context.Background()

const (
	produced   = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_PRODUCED
	delivered  = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DELIVERED
	acked      = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_ACKED
	failed     = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_FAILED
	redeliver  = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_REDELIVER_REQUESTED
	timeout    = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_VISIBILITY_TIMEOUT
	deadLetter = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTERED
	redriven   = dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_REDRIVEN
)

func types(t *dmsv1.MessageTrace) []dmsv1.MessageTraceEventType {
	var out []dmsv1.MessageTraceEventType
	for _, ev := range t.GetEvents() {
		out = append(out, ev.GetType())
	}
	return out
}

// TestTraceFollowsAMessageThroughEveryStep sends a message and takes it
// through a fail, a redeliver, a visibility timeout into the dead letters,
// a redrive and a final ack; its trace shows each step in order, with who
// produced and who consumed, and the producer's trace context.
func TestTraceFollowsAMessageThroughEveryStep(t *testing.T) {
	clock := testserver.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := testserver.Start(t, testserver.WithClock(clock))
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "traced", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 3})
	g, other := s.CreateGroup(t, q, "billing"), s.CreateGroup(t, q, "other")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sent, err := s.Producer().SendMessages(bg, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{
		{Body: []byte("first"), OrderingKey: "k", Attributes: map[string]*dmsv1.AttributeValue{"traceparent": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: tp}}}},
	}})
	require.NoError(t, err)
	id := sent.GetResults()[0].GetMessageId()

	receive := func(consumer string, wait time.Duration) []*dmsv1.ReceivedMessage {
		t.Helper()
		resp, err := s.Consumer().ReceiveMessages(bg, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 1, ConsumerId: consumer, WaitTime: durationpb.New(wait), VisibilityTimeout: durationpb.New(15 * time.Second)})
		require.NoError(t, err)
		return resp.GetMessages()
	}
	first := receive("worker-1", 5*time.Second)
	require.Len(t, first, 1)
	require.Equal(t, id, first[0].GetMessageId(), "the traced message is first")
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, first...)[0].GetApplied())
	second := receive("worker-2", 5*time.Second)
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, second...)[0].GetApplied())
	clock.Advance(61 * time.Second) // the retry delay after two attempts (-delivery.retry-delays)
	third := receive("worker-3", 5*time.Second)
	require.Len(t, third, 1)
	require.Equal(t, id, third[0].GetMessageId())
	clock.Advance(16 * time.Second) // third failure: visibility timeout
	require.Empty(t, receive("worker-3", 0), "a dead letter now")

	red, err := s.Consumer().RedriveDeadLetters(bg, &dmsv1.RedriveDeadLettersRequest{Group: g.GetName(), MessageIds: []string{id}})
	require.NoError(t, err)
	require.True(t, red.GetResults()[0].GetRedriven())
	last := receive("worker-4", 5*time.Second)
	require.Len(t, last, 1)
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, last...)[0].GetApplied())

	traces := dmsv1.NewMessageTraceServiceClient(s.Conn)
	resp, err := traces.GetMessageTrace(bg, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: id})
	require.NoError(t, err)
	require.Len(t, resp.GetTraces(), 1)
	tr := resp.GetTraces()[0]
	require.Equal(t, id, tr.GetMessageId())
	require.Equal(t, "anonymous", tr.GetProducer(), "authentication is off")
	require.Equal(t, "grpc", tr.GetFrontEnd())
	require.Equal(t, tp, tr.GetTraceContext().GetTraceparent())
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tr.GetTraceContext().GetTraceId())
	require.True(t, tr.GetStorage().GetCommitted())
	require.NotEmpty(t, tr.GetStorage().GetReplicas())

	require.Equal(t, []dmsv1.MessageTraceEventType{
		produced,
		delivered, failed,
		delivered, redeliver,
		delivered, timeout, deadLetter,
		redriven,
		delivered, acked,
	}, types(tr), "%v", protojson.Format(tr))
	var consumers []string
	for _, ev := range tr.GetEvents() {
		if ev.GetType() == delivered {
			consumers = append(consumers, ev.GetConsumer())
		}
		if ev.GetType() != produced {
			require.Equal(t, g.GetName(), ev.GetGroup(), "every consumption event names its group")
		}
		if ev.GetType() == deadLetter {
			require.Equal(t, "VISIBILITY_TIMEOUT", ev.GetReason())
		}
	}
	require.Equal(t, []string{"worker-1", "worker-2", "worker-3", "worker-4"}, consumers)

	require.Len(t, tr.GetGroups(), 2)
	status := map[string]dmsv1.GroupTraceStatus{}
	for _, gs := range tr.GetGroups() {
		status[gs.GetDisplayName()] = gs.GetStatus()
	}
	require.Equal(t, dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED, status["billing"])
	require.Equal(t, dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_PENDING, status["other"], "never received by the other group")

	// By ordering key and by group: the same message, one group's events.
	byKey, err := traces.GetMessageTrace(bg, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), OrderingKey: "k", Group: other.GetName()})
	require.NoError(t, err)
	require.Len(t, byKey.GetTraces(), 1)
	require.Equal(t, id, byKey.GetTraces()[0].GetMessageId())
	require.Equal(t, []dmsv1.MessageTraceEventType{produced}, types(byKey.GetTraces()[0]))

	// Over REST, as the console reads it.
	u := "http://" + s.HTTPAddr + "/v1/" + q.GetName() + "/messageTraces?messageId=" + url.QueryEscape(id)
	httpResp, err := http.Get(u)
	require.NoError(t, err)
	defer httpResp.Body.Close()
	require.Equal(t, http.StatusOK, httpResp.StatusCode)
	var body struct {
		Traces []struct {
			MessageID string `json:"messageId"`
			Events    []struct {
				Type string `json:"type"`
			} `json:"events"`
		} `json:"traces"`
	}
	require.NoError(t, json.NewDecoder(httpResp.Body).Decode(&body))
	require.Len(t, body.Traces, 1)
	require.Equal(t, "MESSAGE_TRACE_EVENT_TYPE_PRODUCED", body.Traces[0].Events[0].Type)
}

// TestTraceFollowsADeadLetterToItsEnd: a message failed into the dead
// letters, received there and acknowledged; with several messages, a time
// range returns each in order.
func TestTraceFollowsADeadLetterToItsEnd(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "dl", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 1})
	g := s.CreateGroup(t, q, "g")
	sent := s.Send(t, q, "poison", "fine")
	got := s.Receive(t, g, 2, 30*time.Second)
	require.Len(t, got, 2)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got[0])
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[1])
	dl, err := s.Consumer().ReceiveDeadLetters(bg, &dmsv1.ReceiveDeadLettersRequest{Group: g.GetName(), MaxMessages: 1})
	require.NoError(t, err)
	require.Len(t, dl.GetMessages(), 1)
	dlAck, err := s.Consumer().AckDeadLetters(bg, &dmsv1.AckDeadLettersRequest{Group: g.GetName(), Acks: []*dmsv1.Ack{{ReceiptHandle: dl.GetMessages()[0].GetReceiptHandle()}}})
	require.NoError(t, err)
	require.True(t, dlAck.GetResults()[0].GetApplied())

	traces := dmsv1.NewMessageTraceServiceClient(s.Conn)
	resp, err := traces.GetMessageTrace(bg, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), StartTime: timestamppb.New(time.Now().Add(-time.Hour))})
	require.NoError(t, err)
	require.Len(t, resp.GetTraces(), 2)
	require.False(t, resp.GetTruncated())
	poison, fine := resp.GetTraces()[0], resp.GetTraces()[1]
	require.Equal(t, sent[0].GetMessageId(), poison.GetMessageId())
	require.Equal(t, sent[1].GetMessageId(), fine.GetMessageId())
	require.Equal(t, []dmsv1.MessageTraceEventType{produced, delivered, failed, deadLetter,
		dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTER_DELIVERED,
		dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DEAD_LETTER_ACKED}, types(poison), "%v", protojson.Format(poison))
	require.Equal(t, "FAILED_BY_CONSUMER", poison.GetEvents()[3].GetReason())
	require.Equal(t, dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_DEAD_LETTERED, poison.GetGroups()[0].GetStatus())
	require.Equal(t, []dmsv1.MessageTraceEventType{produced, delivered, acked}, types(fine))

	one, err := traces.GetMessageTrace(bg, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), StartTime: timestamppb.New(time.Now().Add(-time.Hour)), MaxMessages: 1})
	require.NoError(t, err)
	require.Len(t, one.GetTraces(), 1)
	require.True(t, one.GetTruncated())
}

func TestTraceRefusesBadRequests(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "q", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL})
	traces := dmsv1.NewMessageTraceServiceClient(s.Conn)
	for _, tc := range []struct {
		name   string
		req    *dmsv1.GetMessageTraceRequest
		code   codes.Code
		reason string
	}{
		{"nothing selected", &dmsv1.GetMessageTraceRequest{Queue: q.GetName()}, codes.InvalidArgument, "REQUEST_INVALID"},
		{"not a message id", &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: "nope"}, codes.InvalidArgument, "REQUEST_INVALID"},
		{"unknown message", &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: "01890a5d-ac96-774b-bcce-b302099a8057"}, codes.NotFound, "MESSAGE_NOT_FOUND"},
		{"unknown queue", &dmsv1.GetMessageTraceRequest{Queue: "projects/" + project + "/queues/none", MessageId: "01890a5d-ac96-774b-bcce-b302099a8057"}, codes.NotFound, "QUEUE_NOT_FOUND"},
		{"too many", &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), OrderingKey: "k", MaxMessages: 101}, codes.InvalidArgument, "MAX_MESSAGES_INVALID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := traces.GetMessageTrace(bg, tc.req)
			require.Error(t, err)
			require.Equal(t, tc.code, rpcstatus.New(err).Code(), "%v", err)
			require.Equal(t, tc.reason, rpcstatus.Reason(err))
		})
	}
}
