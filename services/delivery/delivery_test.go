package delivery_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

const project = "p1"

var (
	fifo   = &dmsv1.Queue{DisplayName: "fifo", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO}
	normal = &dmsv1.Queue{DisplayName: "normal"}
)

func start(t *testing.T) (*testserver.Server, *testserver.Clock) {
	clock := testserver.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return testserver.Start(t, testserver.WithClock(clock)), clock
}

func TestAckedMessagesAreNotDeliveredAgain(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, fifo)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1", "m2")

	got := s.Receive(t, g, 10, 30*time.Second)
	require.Equal(t, []string{"m0", "m1", "m2"}, testserver.Bodies(got))
	for _, r := range s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got...) {
		require.True(t, r.GetApplied(), r.GetErrorMessage())
	}
	clock.Advance(time.Hour)
	require.Empty(t, s.Receive(t, g, 10, 30*time.Second))
}

func TestVisibilityTimeout(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m")

	first := s.Receive(t, g, 10, 15*time.Second)
	require.Len(t, first, 1)
	require.EqualValues(t, 1, first[0].GetDeliveryCount())
	require.Empty(t, s.Receive(t, g, 10, 15*time.Second), "invisible while in flight")

	clock.Advance(14 * time.Second)
	require.Empty(t, s.Receive(t, g, 10, 15*time.Second), "still invisible before the deadline")

	clock.Advance(time.Second)
	second := s.Receive(t, g, 10, 15*time.Second)
	require.Equal(t, []string{"m"}, testserver.Bodies(second), "visible again at the deadline")
	require.EqualValues(t, 2, second[0].GetDeliveryCount())

	res := s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, first[0])
	require.False(t, res[0].GetApplied(), "the first delivery's handle is stale")
	require.Equal(t, "RECEIPT_HANDLE_EXPIRED", res[0].GetErrorReason())
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, second[0])[0].GetApplied())
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, second[0])[0].GetApplied() == false, "a handle settles once")
}

func TestFailMakesTheMessageAvailableAtOnce(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m")
	got := s.Receive(t, g, 10, 30*time.Second)
	require.True(t, s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, got...)[0].GetApplied())
	again := s.Receive(t, g, 10, 30*time.Second)
	require.Equal(t, []string{"m"}, testserver.Bodies(again))
	require.EqualValues(t, 2, again[0].GetDeliveryCount())
}

func TestGroupsConsumeIndependently(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, fifo)
	a, b := s.CreateGroup(t, q, "a"), s.CreateGroup(t, q, "b")
	s.Send(t, q, "m0", "m1")
	gotA := s.Receive(t, a, 10, 30*time.Second)
	s.Ack(t, a, dmsv1.AckStatus_ACK_STATUS_SUCCESS, gotA...)
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(s.Receive(t, b, 10, 30*time.Second)))

	res := s.Ack(t, b, dmsv1.AckStatus_ACK_STATUS_SUCCESS, gotA[0])
	require.Equal(t, "RECEIPT_HANDLE_MISMATCH", res[0].GetErrorReason(), "a handle of group a does not settle for group b")
	forged := &dmsv1.ReceivedMessage{ReceiptHandle: gotA[0].GetReceiptHandle()[:20] + "AAAA" + gotA[0].GetReceiptHandle()[24:]}
	require.Equal(t, "RECEIPT_HANDLE_INVALID", s.Ack(t, b, dmsv1.AckStatus_ACK_STATUS_SUCCESS, forged)[0].GetErrorReason())
}

func TestFIFOHoldsBackWhileInFlightAndRedeliversFailuresFirst(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, fifo)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1", "m2")

	m0 := s.Receive(t, g, 1, 30*time.Second)
	require.Equal(t, []string{"m0"}, testserver.Bodies(m0))
	require.Empty(t, s.Receive(t, g, 1, 30*time.Second), "m1 waits while m0 is in flight")
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, m0...)
	again := s.Receive(t, g, 2, 30*time.Second)
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(again), "the failed m0 comes before m1")
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, again...)
	require.Equal(t, []string{"m2"}, testserver.Bodies(s.Receive(t, g, 10, 30*time.Second)))
}

func TestCompetingConsumersAckEveryMessageOnce(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "wide", PartitionCount: 4})
	g := s.CreateGroup(t, q, "g")
	const total = 400
	for i := 0; i < total; i += 50 {
		bodies := make([]string, 50)
		for j := range bodies {
			bodies[j] = fmt.Sprint(i + j)
		}
		s.Send(t, q, bodies...)
	}
	var (
		mu    sync.Mutex
		acked = map[string]int{}
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{
					Group: g.GetName(), MaxMessages: 7, VisibilityTimeout: durationpb.New(300 * time.Second),
				})
				if err != nil || len(resp.GetMessages()) == 0 {
					return
				}
				acks := make([]*dmsv1.Ack, len(resp.GetMessages()))
				for i, m := range resp.GetMessages() {
					acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle()}
				}
				res, err := s.Consumer().AckMessages(context.Background(), &dmsv1.AckMessagesRequest{Group: g.GetName(), Acks: acks})
				if err != nil {
					return
				}
				mu.Lock()
				for i, r := range res.GetResults() {
					if r.GetApplied() {
						acked[string(resp.GetMessages()[i].GetMessage().GetBody())]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, acked, total)
	for body, n := range acked {
		require.Equalf(t, 1, n, "message %s acked %d times", body, n)
	}
	stats, err := s.Queues().GetConsumerGroup(context.Background(), &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, total, stats.GetGroup().GetStats().GetConsumedMessages())
	require.EqualValues(t, 0, stats.GetGroup().GetStats().GetAvailableMessages())
}

// State survives a restart: acked messages never return, in-flight ones come
// back only after their deadline, undelivered ones are delivered.
func TestDeliveryStateSurvivesRestart(t *testing.T) {
	s, clock := start(t)
	q := s.CreateQueue(t, project, fifo)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1", "m2", "m3")
	got := s.Receive(t, g, 2, 60*time.Second)
	require.Equal(t, []string{"m0", "m1"}, testserver.Bodies(got))
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, got[0])

	s.Restart(t)
	require.Empty(t, s.Receive(t, g, 10, 30*time.Second), "FIFO: m1 is still in flight after the restart")
	clock.Advance(61 * time.Second)
	again := s.Receive(t, g, 10, 30*time.Second)
	require.Equal(t, []string{"m1", "m2", "m3"}, testserver.Bodies(again))
	require.EqualValues(t, 2, again[0].GetDeliveryCount(), "the delivery count survived")
}

func TestLongPollReturnsWhenAMessageArrives(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	got := make(chan []*dmsv1.ReceivedMessage)
	go func() {
		resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), WaitTime: durationpb.New(60 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		got <- resp.GetMessages()
	}()
	s.Send(t, q, "late")
	require.Equal(t, []string{"late"}, testserver.Bodies(<-got))
}

func TestReceiveParametersAreValidated(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, normal)
	g := s.CreateGroup(t, q, "g")
	tests := []struct {
		name   string
		req    *dmsv1.ReceiveMessagesRequest
		reason string
	}{
		{"too many", &dmsv1.ReceiveMessagesRequest{MaxMessages: 1001}, "MAX_MESSAGES_INVALID"},
		{"negative", &dmsv1.ReceiveMessagesRequest{MaxMessages: -1}, "MAX_MESSAGES_INVALID"},
		{"wait too long", &dmsv1.ReceiveMessagesRequest{WaitTime: durationpb.New(61 * time.Second)}, "WAIT_TIME_INVALID"},
		{"visibility too short", &dmsv1.ReceiveMessagesRequest{VisibilityTimeout: durationpb.New(14 * time.Second)}, "VISIBILITY_TIMEOUT_INVALID"},
		{"visibility too long", &dmsv1.ReceiveMessagesRequest{VisibilityTimeout: durationpb.New(301 * time.Second)}, "VISIBILITY_TIMEOUT_INVALID"},
		{"unknown group", &dmsv1.ReceiveMessagesRequest{Group: q.GetName() + "/groups/nope"}, "GROUP_NOT_FOUND"},
		{"bad name", &dmsv1.ReceiveMessagesRequest{Group: "queues/x"}, "RESOURCE_NAME_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Group == "" {
				tt.req.Group = g.GetName()
			}
			_, err := s.Consumer().ReceiveMessages(context.Background(), tt.req)
			require.Equal(t, tt.reason, rpcstatus.Reason(err), "%v", err)
			require.NotEqual(t, codes.OK, status.Code(err))
		})
	}
}

func TestLongPollWakesOnFirstMessageOfANewQueue(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, &dmsv1.Queue{DisplayName: "fresh", PartitionCount: 2})
	g := s.CreateGroup(t, q, "g")
	got := make(chan []*dmsv1.ReceivedMessage)
	go func() {
		resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), WaitTime: durationpb.New(60 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		got <- resp.GetMessages()
	}()
	s.Send(t, q, "first")
	select {
	case msgs := <-got:
		require.Equal(t, []string{"first"}, testserver.Bodies(msgs))
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not wake for the first message of a partition never written to")
	}
}

func TestFIFOSuccessAckWakesAWaitingReceive(t *testing.T) {
	s, _ := start(t)
	q := s.CreateQueue(t, project, fifo)
	g := s.CreateGroup(t, q, "g")
	s.Send(t, q, "m0", "m1")
	m0 := s.Receive(t, g, 1, 30*time.Second)
	got := make(chan []*dmsv1.ReceivedMessage)
	go func() {
		resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), WaitTime: durationpb.New(60 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		got <- resp.GetMessages()
	}()
	s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, m0...)
	select {
	case msgs := <-got:
		require.Equal(t, []string{"m1"}, testserver.Bodies(msgs))
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting FIFO receive was not woken by the ack of the message ahead")
	}
}
