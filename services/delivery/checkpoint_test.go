package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// With a checkpoint after nearly every change, a restart rebuilds the same
// state from the last checkpoint: acked stays acked, in flight stays in
// flight until its deadline, failure counts and retries carry over.
func TestCheckpointsRestoreTheSameState(t *testing.T) {
	defer delivery.SetCheckpointBytes(1)()
	clock := testserver.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := testserver.Start(t, testserver.WithClock(clock), testserver.WithFlags("-storage.internal-segment-bytes=1024"))
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "cp", PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 3})
	g := s.CreateGroup(t, q, "g")
	var bodies []string
	for i := range 12 {
		bodies = append(bodies, fmt.Sprint(i))
	}
	s.Send(t, q, bodies...)
	got := s.Receive(t, g, 12, 60*time.Second)
	require.Len(t, got, 12)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0], got[1], got[3], got[4], got[5]) // 2 is a gap
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got[6])                                    // available, 1 attempt
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, got[7])                               // retry in 30 s
	// 2 and 8..11 stay in flight until +60 s.

	s.Restart(t)
	again := s.Receive(t, g, 12, 60*time.Second)
	require.Equal(t, []string{"6"}, testserver.Bodies(again))
	require.EqualValues(t, 2, again[0].GetDeliveryCount(), "the failed attempt survived")
	clock.Advance(31 * time.Second)
	retried := s.Receive(t, g, 12, 60*time.Second)
	require.Equal(t, []string{"7"}, testserver.Bodies(retried))
	clock.Advance(30 * time.Second)
	expired := s.Receive(t, g, 12, 60*time.Second)
	require.ElementsMatch(t, []string{"2", "6", "8", "9", "10", "11"}, testserver.Bodies(expired), "in-flight deadlines survived (6 was redelivered at +0 s)")

	// Checkpoints let storage drop the state log's older segments.
	stateLog := logid.GroupState(q.GetId(), g.GetId())
	require.Eventually(t, func() bool {
		info, err := storagev1.NewStorageServiceClient(s.Internal).GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{stateLog}})
		return err == nil && info.GetLogs()[0].GetStartOffset() > 0
	}, 10*time.Second, 10*time.Millisecond, "the state log was trimmed")
}
