package delivery_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

var bg = context.Background()

func TestRedeliverWaitsTheRetryDelayDurably(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m")
	got := s.Receive(t, g, 1, 30*time.Second)
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, got...)[0].GetApplied())

	clock.Advance(29 * time.Second)
	require.Empty(t, s.Receive(t, g, 1, 30*time.Second), "not before the retry delay")
	s.Restart(t)
	require.Empty(t, s.Receive(t, g, 1, 30*time.Second), "the delay survives a restart")
	clock.Advance(time.Second)
	again := s.Receive(t, g, 1, 30*time.Second)
	require.Equal(t, []string{"m"}, testserver.Bodies(again))
	require.EqualValues(t, 2, again[0].GetDeliveryCount())
}

func dlQueue(mode dmsv1.QueueMode) *dmsv1.Queue {
	return &dmsv1.Queue{DisplayName: "dl", Mode: mode, DeadLetterEnabled: true, MaxConsumeCount: 2}
}

func receiveDL(t *testing.T, s *testserver.Server, g *dmsv1.ConsumerGroup) []*dmsv1.ReceivedMessage {
	t.Helper()
	resp, err := s.Consumer().ReceiveDeadLetters(bg, &dmsv1.ReceiveDeadLettersRequest{Group: g.GetName(), MaxMessages: 10})
	require.NoError(t, err)
	return resp.GetMessages()
}

func TestFailuresMoveMessagesToTheGroupsDeadLetters(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, dlQueue(dmsv1.QueueMode_QUEUE_MODE_NORMAL))
	g, other := s.CreateGroup(t, q, "g"), s.CreateGroup(t, q, "other")
	s.Send(t, q, "poison")

	// Attempt 1 fails by ack, attempt 2 by visibility timeout: two failures.
	first := s.Receive(t, g, 1, 15*time.Second)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, first...)
	require.Len(t, s.Receive(t, g, 1, 15*time.Second), 1)
	clock.Advance(16 * time.Second)
	require.Empty(t, s.Receive(t, g, 1, 15*time.Second), "the message is a dead letter now")

	dl := receiveDL(t, s, g)
	require.Equal(t, []string{"poison"}, testserver.Bodies(dl))
	require.EqualValues(t, 2, dl[0].GetDeadLetter().GetFailureCount())
	require.Equal(t, "VISIBILITY_TIMEOUT", dl[0].GetDeadLetter().GetLastFailureReason())
	require.Equal(t, first[0].GetOffset(), dl[0].GetDeadLetter().GetSourceOffset())
	require.Empty(t, receiveDL(t, s, other), "dead letters belong to the group that failed")
	require.Len(t, s.Receive(t, other, 1, 15*time.Second), 1, "other groups still get the message")

	stats, err := s.Queues().GetConsumerGroup(bg, &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.GetGroup().GetStats().GetProducedDeadLetters())
	require.EqualValues(t, 1, stats.GetGroup().GetStats().GetAvailableDeadLetters())

	// A message handle does not settle a dead letter, a dead-letter handle does.
	resp, err := s.Consumer().AckDeadLetters(bg, &dmsv1.AckDeadLettersRequest{Group: g.GetName(), Acks: []*dmsv1.Ack{{ReceiptHandle: first[0].GetReceiptHandle()}}})
	require.NoError(t, err)
	require.Equal(t, "RECEIPT_HANDLE_KIND_MISMATCH", resp.GetResults()[0].GetErrorReason())
	resp, err = s.Consumer().AckDeadLetters(bg, &dmsv1.AckDeadLettersRequest{Group: g.GetName(), Acks: []*dmsv1.Ack{{ReceiptHandle: dl[0].GetReceiptHandle()}}})
	require.NoError(t, err)
	require.True(t, resp.GetResults()[0].GetApplied())
	clock.Advance(time.Hour)
	require.Empty(t, receiveDL(t, s, g), "an acked dead letter is gone")
}

func TestFIFODeadLettersKeepOrder(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "dl", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO, DeadLetterEnabled: true, MaxConsumeCount: 1})
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "a", "b", "c")
	for range 3 {
		got := s.Receive(t, g, 1, 30*time.Second)
		require.Len(t, got, 1)
		s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got...)
	}
	require.Equal(t, []string{"a", "b", "c"}, testserver.Bodies(receiveDL(t, s, g)))
}

func TestRedriveGivesDeadLettersBackToTheGroupOnly(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "dl", DeadLetterEnabled: true, MaxConsumeCount: 1, PartitionCount: 1})
	g, other := s.CreateGroup(t, q, "g"), s.CreateGroup(t, q, "other")
	sent := s.Send(t, q, "x", "y", "z")
	got := s.Receive(t, g, 10, 30*time.Second)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got...)
	otherGot := s.Receive(t, other, 10, 30*time.Second)
	s.Ack(t, other, dmsv1.AckStatus_ACK_STATUS_SUCCESS, otherGot...)

	resp, err := s.Consumer().RedriveDeadLetters(bg, &dmsv1.RedriveDeadLettersRequest{Group: g.GetName(), MessageIds: []string{sent[1].GetMessageId()}})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), 1)
	require.True(t, resp.GetResults()[0].GetRedriven())
	back := s.Receive(t, g, 10, 30*time.Second)
	require.Equal(t, []string{"y"}, testserver.Bodies(back))
	require.EqualValues(t, 1, back[0].GetDeliveryCount(), "a redriven message starts a fresh count")
	require.Equal(t, []string{"x", "z"}, testserver.Bodies(receiveDL(t, s, g)))
	require.Empty(t, s.Receive(t, other, 10, 30*time.Second), "other groups are not affected")

	s.Restart(t)
	resp, err = s.Consumer().RedriveDeadLetters(bg, &dmsv1.RedriveDeadLettersRequest{Group: g.GetName()})
	require.NoError(t, err)
	require.Empty(t, resp.GetResults(), "x and z are in flight as dead letters, y is back in the queue")
}

func TestTagFilters(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "tags", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	anyG, allG := s.CreateGroup(t, q, "any"), s.CreateGroup(t, q, "all")
	msgs := []*dmsv1.Message{
		{Body: []byte("a"), Tags: []string{"red"}},
		{Body: []byte("ab"), Tags: []string{"red", "big"}},
		{Body: []byte("none")},
		{Body: []byte("b"), Tags: []string{"big"}},
	}
	_, err := s.Producer().SendMessages(bg, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	require.NoError(t, err)
	receive := func(g *dmsv1.ConsumerGroup, f *dmsv1.TagFilter) ([]*dmsv1.ReceivedMessage, error) {
		resp, err := s.Consumer().ReceiveMessages(bg, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 10, TagFilter: f})
		return resp.GetMessages(), err
	}
	got, err := receive(anyG, &dmsv1.TagFilter{Tags: []string{"red", "big"}})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "ab", "b"}, testserver.Bodies(got))
	got, err = receive(allG, &dmsv1.TagFilter{Tags: []string{"big", "red"}, Match: dmsv1.TagMatch_TAG_MATCH_ALL})
	require.NoError(t, err)
	require.Equal(t, []string{"ab"}, testserver.Bodies(got))

	_, err = receive(allG, &dmsv1.TagFilter{Tags: []string{"red"}})
	require.Equal(t, "TAG_FILTER_CONFLICT", rpcstatus.Reason(err))
	_, err = receive(allG, &dmsv1.TagFilter{Tags: []string{"red", "big"}, Match: dmsv1.TagMatch_TAG_MATCH_ALL})
	require.NoError(t, err, "the same rule in another order is the same rule")
	_, err = receive(allG, nil)
	require.NoError(t, err, "a receive may omit the rule")
	_, err = receive(allG, &dmsv1.TagFilter{Tags: []string{"a b"}})
	require.Equal(t, "TAG_INVALID", rpcstatus.Reason(err))

	s.Restart(t)
	_, err = receive(allG, &dmsv1.TagFilter{Tags: []string{"red"}})
	require.Equal(t, "TAG_FILTER_CONFLICT", rpcstatus.Reason(err), "the rule survives a restart")
	groups, err := s.Queues().ListConsumerGroups(bg, &dmsv1.ListConsumerGroupsRequest{Parent: q.GetName()})
	require.NoError(t, err)
	require.Equal(t, []string{"big", "red"}, groups.GetGroups()[1].GetTagFilter().GetTags())
}

func TestSeek(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "seek", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1")
	middle := clock.Now().Add(time.Second)
	clock.Advance(2 * time.Second)
	s.Send(t, q, "m2", "m3")
	all := s.Receive(t, g, 10, 30*time.Second)
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, all...)

	seek := func(req *dmsv1.SeekConsumerGroupRequest) []*dmsv1.PartitionOffset {
		req.Group = g.GetName()
		resp, err := s.Consumer().SeekConsumerGroup(bg, req)
		require.NoError(t, err)
		return resp.GetPositions()
	}
	require.EqualValues(t, 2, seek(&dmsv1.SeekConsumerGroupRequest{Target: &dmsv1.SeekConsumerGroupRequest_Time{Time: timestamppb.New(middle)}})[0].GetOffset())
	require.Equal(t, []string{"m2", "m3"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)), "acked messages after the point come again")

	seek(&dmsv1.SeekConsumerGroupRequest{Target: &dmsv1.SeekConsumerGroupRequest_Position{Position: dmsv1.SeekPosition_SEEK_POSITION_EARLIEST}})
	require.Equal(t, []string{"m0", "m1", "m2", "m3"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)), "in-flight deliveries are forgotten too")

	seek(&dmsv1.SeekConsumerGroupRequest{Target: &dmsv1.SeekConsumerGroupRequest_Offsets{Offsets: &dmsv1.PartitionOffsets{Offsets: []*dmsv1.PartitionOffset{{Partition: 0, Offset: 3}}}}})
	s.Restart(t)
	require.Equal(t, []string{"m3"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)), "the position survives a restart")

	seek(&dmsv1.SeekConsumerGroupRequest{Target: &dmsv1.SeekConsumerGroupRequest_Position{Position: dmsv1.SeekPosition_SEEK_POSITION_LATEST}})
	require.Empty(t, s.Receive(t, g, 10, 30*time.Second))
	_, err := s.Consumer().SeekConsumerGroup(bg, &dmsv1.SeekConsumerGroupRequest{Group: g.GetName(), Target: &dmsv1.SeekConsumerGroupRequest_Offsets{Offsets: &dmsv1.PartitionOffsets{Offsets: []*dmsv1.PartitionOffset{{Partition: 5}}}}})
	require.Equal(t, "SEEK_TARGET_INVALID", rpcstatus.Reason(err))
	_, err = s.Consumer().SeekConsumerGroup(bg, &dmsv1.SeekConsumerGroupRequest{Group: g.GetName()})
	require.Equal(t, "SEEK_TARGET_INVALID", rpcstatus.Reason(err))
}

func TestBroadcastConsumersEachGetEveryMessage(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "bc", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1")
	receive := func(consumer string, start dmsv1.BroadcastStart, autoAck bool) []*dmsv1.ReceivedMessage {
		resp, err := s.Consumer().ReceiveMessages(bg, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 10, ConsumerId: consumer,
			Broadcast: &dmsv1.BroadcastOptions{Start: start, AutoAck: autoAck}})
		require.NoError(t, err)
		return resp.GetMessages()
	}
	a := receive("a", dmsv1.BroadcastStart_BROADCAST_START_EARLIEST, false)
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(a))
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(receive("b", dmsv1.BroadcastStart_BROADCAST_START_COMMITTED, true)))
	latest := receive("c", dmsv1.BroadcastStart_BROADCAST_START_LATEST, true)
	require.Empty(t, latest)
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)), "the group's own consumers are unaffected")

	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, a...)[0].GetApplied(), "broadcast handles ack through AckMessages")
	s.Send(t, q, "m2")
	s.Restart(t)
	require.Equal(t, []string{"m2"}, testserver.Bodies(receive("a", dmsv1.BroadcastStart_BROADCAST_START_COMMITTED, false)), "the server kept a's position")
	require.Equal(t, []string{"m2"}, testserver.Bodies(receive("b", dmsv1.BroadcastStart_BROADCAST_START_COMMITTED, true)))
	require.Equal(t, []string{"m2"}, testserver.Bodies(receive("c", dmsv1.BroadcastStart_BROADCAST_START_EARLIEST, true)), "c started at the latest message")

	_, err := s.Consumer().ReceiveMessages(bg, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), Broadcast: &dmsv1.BroadcastOptions{}})
	require.Equal(t, "CONSUMER_ID_REQUIRED", rpcstatus.Reason(err))
}

func TestSubscribeStreamsWithCreditsAndRangeAcks(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "stream", PartitionCount: 1})
	g := s.CreateGroup(t, q, "g")
	bodies := make([]string, 50)
	for i := range bodies {
		bodies[i] = string(rune('a' + i%26))
	}
	s.Send(t, q, bodies...)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	stream, err := s.Consumer().Subscribe(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: g.GetName(), Credits: 20, VisibilityTimeout: durationpb.New(60 * time.Second)}}))
	var got []*dmsv1.ReceivedMessage
	for len(got) < 20 {
		resp, err := stream.Recv()
		require.NoError(t, err)
		got = append(got, resp.GetMessages()...)
	}
	require.Len(t, got, 20, "no more than the credits")
	require.NoError(t, stream.Send(&dmsv1.SubscribeRequest{
		AckRanges: []*dmsv1.OffsetRange{{Partition: 0, First: got[0].GetOffset(), Last: got[18].GetOffset()}},
		Acks:      []*dmsv1.Ack{{ReceiptHandle: got[19].GetReceiptHandle(), Status: dmsv1.AckStatus_ACK_STATUS_FAIL}},
		Credits:   30,
	}))
	var acks []*dmsv1.AckResult
	for acks == nil || len(got) < 50 {
		resp, err := stream.Recv()
		require.NoError(t, err)
		got = append(got, resp.GetMessages()...)
		if resp.GetAckResults() != nil {
			acks = resp.GetAckResults()
		}
	}
	require.Len(t, acks, 2)
	require.True(t, acks[0].GetApplied() && acks[1].GetApplied())
	require.Len(t, got, 50, "50 credits in all")
	require.Equal(t, got[19].GetOffset(), got[20].GetOffset(), "the failed message comes first")
	require.EqualValues(t, 2, got[20].GetDeliveryCount())
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF, "the stream ends cleanly when the client closes its side, credits left or not")
	stats, err := s.Queues().GetConsumerGroup(bg, &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, 19, stats.GetGroup().GetStats().GetConsumedMessages())
	clock.Advance(7 * time.Second)
	stats, err = s.Queues().GetConsumerGroup(context.Background(), &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	require.NoError(t, err)
	require.Equal(t, 7*time.Second, stats.GetGroup().GetStats().GetOldestUnackedAge().AsDuration(),
		"the oldest unacked message was sent 7 s ago on the test clock")
}

func TestFIFOOrderingKeysProceedInParallel(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, fifo)
	g := s.CreateGroup(t, q, "g")
	var msgs []*dmsv1.Message
	for _, km := range [][2]string{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}, {"", "n1"}, {"b", "b2"}, {"", "n2"}} {
		msgs = append(msgs, &dmsv1.Message{Body: []byte(km[1]), OrderingKey: km[0]})
	}
	_, err := s.Producer().SendMessages(bg, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	require.NoError(t, err)

	a1 := s.Receive(t, g, 1, 30*time.Second)
	require.Equal(t, []string{"a1"}, testserver.Bodies(a1))
	rest := s.Receive(t, g, 10, 30*time.Second)
	require.Equal(t, []string{"b1", "n1", "b2", "n2"}, testserver.Bodies(rest), "a2 waits behind a1; other keys pass")
	require.Empty(t, s.Receive(t, g, 10, 30*time.Second))

	s.Restart(t)
	require.Empty(t, s.Receive(t, g, 10, 30*time.Second), "after a restart a2 still waits behind the in-flight a1")
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, a1...)
	require.Equal(t, []string{"a2"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)))
}

func TestNormalQueueOrderingKeyPicksThePartition(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "keyed", PartitionCount: 4})
	var msgs []*dmsv1.Message
	for i := range 20 {
		msgs = append(msgs, &dmsv1.Message{Body: []byte{byte('a' + i)}, OrderingKey: "same"}, &dmsv1.Message{Body: []byte{byte('A' + i)}, OrderingKey: "other"})
	}
	resp, err := s.Producer().SendMessages(bg, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	require.NoError(t, err)
	for i, r := range resp.GetResults() {
		require.Equal(t, resp.GetResults()[i%2].GetPartition(), r.GetPartition(), "one key, one partition")
		if i >= 2 {
			require.Greater(t, r.GetOffset(), resp.GetResults()[i-2].GetOffset(), "in order within the key")
		}
	}
}

func TestRedeliverFollowsTheRetrySchedule(t *testing.T) {
	clock := testserver.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := testserver.Start(t, testserver.WithClock(clock), testserver.WithFlags("-delivery.retry-delays=30s,45s"))
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m")
	for attempt, delay := range []time.Duration{30 * time.Second, 45 * time.Second, 45 * time.Second} {
		got := s.Receive(t, g, 1, 30*time.Second)
		require.Lenf(t, got, 1, "attempt %d", attempt+1)
		s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_REDELIVER, got...)
		clock.Advance(delay - time.Second)
		require.Emptyf(t, s.Receive(t, g, 1, 30*time.Second), "attempt %d: not before %s", attempt+1, delay)
		clock.Advance(time.Second)
	}
	require.Len(t, s.Receive(t, g, 1, 30*time.Second), 1)
}

func TestSubscribeEndsWhenTheClientClosesWithCreditsLeft(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	stream, err := s.Consumer().Subscribe(bg)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: g.GetName(), Credits: 1000}}))
	require.NoError(t, stream.CloseSend())
	ended := make(chan error, 1)
	go func() { _, err := stream.Recv(); ended <- err }()
	select {
	case err := <-ended:
		require.ErrorIs(t, err, io.EOF)
	case <-time.After(20 * time.Second):
		t.Fatal("the server kept the stream open after the client closed its side")
	}
}

func TestChangeVisibilityExtendsTheDeadlineDurably(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "slow")
	got := s.Receive(t, g, 1, 15*time.Second)
	clock.Advance(10 * time.Second)
	resp, err := s.Consumer().ChangeVisibility(bg, &dmsv1.ChangeVisibilityRequest{Group: g.GetName(),
		ReceiptHandles: []string{got[0].GetReceiptHandle(), "bogus"}, VisibilityTimeout: durationpb.New(60 * time.Second)})
	require.NoError(t, err)
	require.True(t, resp.GetResults()[0].GetApplied())
	require.Equal(t, "RECEIPT_HANDLE_INVALID", resp.GetResults()[1].GetErrorReason())

	clock.Advance(10 * time.Second) // past the original 15 s
	require.Empty(t, s.Receive(t, g, 1, 15*time.Second), "the extension holds")
	s.Restart(t)
	clock.Advance(49 * time.Second)
	require.Empty(t, s.Receive(t, g, 1, 15*time.Second), "and survives a restart")
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got...)[0].GetApplied(), "the handle is still valid")

	s.Send(t, q, "lost")
	lost := s.Receive(t, g, 1, 15*time.Second)
	clock.Advance(16 * time.Second)
	resp, err = s.Consumer().ChangeVisibility(bg, &dmsv1.ChangeVisibilityRequest{Group: g.GetName(),
		ReceiptHandles: []string{lost[0].GetReceiptHandle()}, VisibilityTimeout: durationpb.New(60 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, "RECEIPT_HANDLE_EXPIRED", resp.GetResults()[0].GetErrorReason(), "too late: the delivery expired")
}
