package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// Once checkpoints let storage drop the start of a group's state log, a
// message's trace gives the group's state at the checkpoint instead of the
// events before it (services/msgtrace), and still the right status.
func TestTraceAfterTheStateLogWasTrimmed(t *testing.T) {
	defer delivery.SetCheckpointBytes(1)()
	s := testserver.Start(t, testserver.WithFlags("-storage.internal-segment-bytes=1024"))
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "trimmed", PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 5})
	g := s.CreateGroup(t, q, "g")
	sent := s.Send(t, q, "acked", "retrying")
	got := s.Receive(t, g, 2, 60*time.Second)
	require.Len(t, got, 2)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0])
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, got[1]) // back in 30 s, after the loop below
	// More changes, each with a checkpoint, until storage drops segments.
	stateLog := logid.GroupState(q.GetId(), g.GetId())
	require.Eventually(t, func() bool {
		s.Send(t, q, "more")
		for _, m := range s.Receive(t, g, 10, 60*time.Second) {
			require.NotEqual(t, sent[1].GetMessageId(), m.GetMessageId(), "not before its retry delay")
			s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, m)
		}
		info, err := storagev1.NewStorageServiceClient(s.Internal).GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{stateLog}})
		return err == nil && info.GetLogs()[0].GetStartOffset() > 0
	}, 20*time.Second, time.Millisecond, "the state log was trimmed")

	traces := dmsv1.NewMessageTraceServiceClient(s.Conn)
	for _, tc := range []struct {
		id     string
		status dmsv1.GroupTraceStatus
	}{
		{sent[0].GetMessageId(), dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED},
		{sent[1].GetMessageId(), dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_RETRYING},
	} {
		resp, err := traces.GetMessageTrace(context.Background(), &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: tc.id})
		require.NoError(t, err)
		tr := resp.GetTraces()[0]
		require.Equal(t, tc.status, tr.GetGroups()[0].GetStatus(), "%v", tr)
		require.NotNil(t, tr.GetGroups()[0].GetHistorySince(), "the group's history is cut")
		require.Equal(t, dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_PRODUCED, tr.GetEvents()[0].GetType())
		var types []dmsv1.MessageTraceEventType
		for _, ev := range tr.GetEvents()[1:] {
			types = append(types, ev.GetType())
		}
		require.NotContains(t, types, dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_SKIPPED, "an ack whose delivery was trimmed is no skip")
		if tc.status == dmsv1.GroupTraceStatus_GROUP_TRACE_STATUS_ACKED {
			require.Contains(t, []dmsv1.MessageTraceEventType{
				dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_HISTORY_TRIMMED,
				dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_ACKED,
			}, types[0], "the checkpointed state or the ack, %v", tr)
		}
	}
}

// With -delivery.state-history-checkpoints, checkpoints no longer trim the
// history away: a trace still has every event, and the group reloads the
// same state from the longer log.
func TestStateHistoryCheckpointsKeepTheTraceHistory(t *testing.T) {
	defer delivery.SetCheckpointBytes(1)()
	s := testserver.Start(t, testserver.WithFlags("-storage.internal-segment-bytes=1024", "-delivery.state-history-checkpoints=1000"))
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "kept", PartitionCount: 1})
	g := s.CreateGroup(t, q, "g")
	sent := s.Send(t, q, "first")
	got := s.Receive(t, g, 1, 60*time.Second)
	require.Len(t, got, 1)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got...)
	for range 20 { // 20 checkpoints, each in segments of their own
		s.Send(t, q, "more")
		s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, s.Receive(t, g, 10, 60*time.Second)...)
	}
	info, err := storagev1.NewStorageServiceClient(s.Internal).GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{logid.GroupState(q.GetId(), g.GetId())}})
	require.NoError(t, err)
	require.Zero(t, info.GetLogs()[0].GetStartOffset(), "nothing trimmed")

	resp, err := dmsv1.NewMessageTraceServiceClient(s.Conn).GetMessageTrace(context.Background(), &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: sent[0].GetMessageId()})
	require.NoError(t, err)
	tr := resp.GetTraces()[0]
	require.Nil(t, tr.GetGroups()[0].GetHistorySince())
	var types []dmsv1.MessageTraceEventType
	for _, ev := range tr.GetEvents() {
		types = append(types, ev.GetType())
	}
	require.Equal(t, []dmsv1.MessageTraceEventType{
		dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_PRODUCED,
		dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_DELIVERED,
		dmsv1.MessageTraceEventType_MESSAGE_TRACE_EVENT_TYPE_ACKED,
	}, types)

	s.Restart(t)
	require.Empty(t, s.Receive(t, g, 10, 60*time.Second), "everything stays acked after a replay of the whole log")
}
