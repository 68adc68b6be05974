package scheduler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// start is half past an hour, so that delays cross timer buckets.
var start = time.Date(2026, 1, 1, 10, 30, 0, 0, time.UTC)

// env is a server on a manual clock with one queue and one group.
type env struct {
	*testserver.Server
	clock *testserver.Clock
	queue *dmsv1.Queue
	group *dmsv1.ConsumerGroup
}

func newEnv(t *testing.T, q *dmsv1.Queue) *env {
	t.Helper()
	clock := testserver.NewClock(start)
	s := testserver.Start(t, testserver.WithClock(clock))
	if q == nil {
		q = &dmsv1.Queue{DisplayName: "q", PartitionCount: 1}
	}
	e := &env{Server: s, clock: clock, queue: s.CreateQueue(t, "p", q)}
	e.group = s.CreateGroup(t, e.queue, "g")
	return e
}

func delayed(body string, d time.Duration) *dmsv1.Message {
	return &dmsv1.Message{Body: []byte(body), Delay: durationpb.New(d)}
}

func (e *env) send(t *testing.T, msgs ...*dmsv1.Message) []*dmsv1.SendResult {
	t.Helper()
	resp, err := e.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: e.queue.GetName(), Messages: msgs})
	require.NoError(t, err)
	return resp.GetResults()
}

func (e *env) stats(t *testing.T) *dmsv1.Queue {
	t.Helper()
	resp, err := e.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: e.queue.GetName()})
	require.NoError(t, err)
	return resp.GetQueue()
}

// released reports how many messages the queue holds (released ones).
func (e *env) released(t *testing.T) int64 { return e.stats(t).GetMessageCount() }

// stillHeld checks for a while that nothing more than n was released: the
// scheduler ticks many times meanwhile.
func (e *env) stillHeld(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.LessOrEqual(t, e.released(t), n, "released before its time")
		time.Sleep(10 * time.Millisecond)
	}
}

// receiveAll receives and acknowledges until n messages came, in order of
// receipt.
func (e *env) receiveAll(t *testing.T, n int) []*dmsv1.ReceivedMessage {
	t.Helper()
	var got []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		msgs := e.Receive(t, e.group, 100, time.Minute)
		if len(msgs) > 0 {
			e.Ack(t, e.group, dmsv1.AckStatus_ACK_STATUS_SUCCESS, msgs...)
		}
		got = append(got, msgs...)
		return len(got) >= n
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, got, n)
	return got
}

func (e *env) cancel(t *testing.T, ids ...string) []*dmsv1.CancelResult {
	t.Helper()
	resp, err := e.Producer().CancelScheduledMessages(context.Background(), &dmsv1.CancelScheduledMessagesRequest{Queue: e.queue.GetName(), ScheduleIds: ids})
	require.NoError(t, err)
	return resp.GetResults()
}

func TestDelayedMessageIsReleasedAtItsTimeNeverBefore(t *testing.T) {
	e := newEnv(t, nil)
	res := e.send(t, delayed("later", 10*time.Second), &dmsv1.Message{Body: []byte("now")})
	require.NotEmpty(t, res[0].GetScheduleId())
	require.Equal(t, start.Add(10*time.Second), res[0].GetDeliverTime().AsTime())
	require.Empty(t, res[1].GetScheduleId(), "a message without delay is stored at once")

	q := e.stats(t)
	require.EqualValues(t, 1, q.GetMessageCount())
	require.EqualValues(t, 1, q.GetScheduledMessageCount())
	require.Equal(t, start.Add(10*time.Second), q.GetNextScheduledTime().AsTime())
	require.Equal(t, []string{"now"}, testserver.Bodies(e.receiveAll(t, 1)))

	e.clock.Advance(10*time.Second - time.Millisecond)
	e.stillHeld(t, 1)
	e.clock.Advance(time.Millisecond)
	got := e.receiveAll(t, 1)
	require.Equal(t, "later", string(got[0].GetMessage().GetBody()))
	require.Equal(t, res[0].GetMessageId(), got[0].GetMessageId(), "a released message keeps the id its producer got")
	require.Nil(t, got[0].GetMessage().GetDelay(), "consumers do not see the delay")
	require.False(t, got[0].GetPublishTime().AsTime().Before(start.Add(10*time.Second)), "published at its time")

	q = e.stats(t)
	require.Zero(t, q.GetScheduledMessageCount())
	require.Nil(t, q.GetNextScheduledTime())
}

func TestDeliverTimeAcrossHours(t *testing.T) {
	e := newEnv(t, nil)
	at := start.Add(3*time.Hour + 15*time.Minute) // a bucket outside the window
	res := e.send(t, &dmsv1.Message{Body: []byte("at"), DeliverTime: timestamppb.New(at)},
		&dmsv1.Message{Body: []byte("past"), DeliverTime: timestamppb.New(start.Add(-time.Minute))})
	require.Equal(t, at, res[0].GetDeliverTime().AsTime())
	require.Empty(t, res[1].GetScheduleId(), "a deliver time already passed is now")
	require.Equal(t, at, e.stats(t).GetNextScheduledTime().AsTime(), "next due time of a bucket outside the window")

	e.clock.Advance(at.Sub(start) - time.Millisecond)
	e.stillHeld(t, 1)
	e.clock.Advance(time.Millisecond)
	require.Equal(t, []string{"past", "at"}, testserver.Bodies(e.receiveAll(t, 2)))
}

func TestTimersAreReleasedInDueOrder(t *testing.T) {
	e := newEnv(t, nil)
	delays := []time.Duration{50 * time.Second, 10 * time.Second, 90 * time.Minute, 30 * time.Second, 10 * time.Second, 4 * time.Hour}
	var msgs []*dmsv1.Message
	for i, d := range delays {
		msgs = append(msgs, delayed(fmt.Sprintf("%d:%v", i, d), d))
	}
	e.send(t, msgs...)
	e.send(t, delayed("late-sent:20s", 20*time.Second))
	want := []string{"1:10s", "4:10s", "late-sent:20s", "3:30s", "0:50s", "2:1h30m0s", "5:4h0m0s"}

	// In steps: every message comes at its time, in due order.
	var got []string
	for _, step := range []time.Duration{10 * time.Second, 25 * time.Second, time.Minute, 2 * time.Hour, 2 * time.Hour} {
		e.clock.Advance(step)
		now := e.clock.Now()
		want := 0
		for _, d := range append(slices.Clone(delays), 20*time.Second) {
			if !start.Add(d).After(now) {
				want++
			}
		}
		for _, m := range e.receiveAll(t, want-len(got)) {
			got = append(got, string(m.GetMessage().GetBody()))
		}
	}
	require.Equal(t, want, got)
}

func TestTimersDueTogetherAreReleasedInOneOrder(t *testing.T) {
	e := newEnv(t, nil)
	var msgs []*dmsv1.Message
	for i := range 200 {
		msgs = append(msgs, delayed(fmt.Sprintf("%03d", 199-i), time.Duration(200-i)*time.Millisecond))
	}
	e.send(t, msgs...)
	e.clock.Advance(time.Second)
	got := testserver.Bodies(e.receiveAll(t, 200))
	require.True(t, slices.IsSorted(got), "released in due order: %v", got)
}

func TestCancel(t *testing.T) {
	e := newEnv(t, nil)
	res := e.send(t, delayed("cancel me", time.Minute), delayed("keep me", time.Minute), delayed("release me", time.Second))
	other := newEnvOnServer(t, e, "other")
	otherRes := other.send(t, delayed("x", time.Minute))

	results := e.cancel(t, res[0].GetScheduleId(), "not-an-id", otherRes[0].GetScheduleId())
	require.True(t, results[0].GetCancelled(), "%v", results[0])
	require.Equal(t, "SCHEDULE_ID_INVALID", results[1].GetErrorReason())
	require.Equal(t, "SCHEDULE_NOT_FOUND", results[2].GetErrorReason(), "an id of another queue")
	require.EqualValues(t, 2, e.stats(t).GetScheduledMessageCount())

	again := e.cancel(t, res[0].GetScheduleId())
	require.False(t, again[0].GetCancelled())
	require.Equal(t, "SCHEDULE_NOT_FOUND", again[0].GetErrorReason())

	e.clock.Advance(time.Second)
	require.Equal(t, []string{"release me"}, testserver.Bodies(e.receiveAll(t, 1)))
	late := e.cancel(t, res[2].GetScheduleId())
	require.Equal(t, "SCHEDULE_ALREADY_RELEASED", late[0].GetErrorReason(), "cancel after release: %v", late[0])

	e.clock.Advance(time.Minute)
	require.Equal(t, []string{"keep me"}, testserver.Bodies(e.receiveAll(t, 1)))
	e.stillHeld(t, 2)
	require.Zero(t, e.stats(t).GetScheduledMessageCount())
}

// newEnvOnServer adds a queue to the server of e.
func newEnvOnServer(t *testing.T, e *env, name string) *env {
	q := e.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: name, PartitionCount: 1})
	return &env{Server: e.Server, clock: e.clock, queue: q, group: e.CreateGroup(t, q, "g")}
}

func TestReschedule(t *testing.T) {
	e := newEnv(t, nil)
	res := e.send(t, delayed("later", 10*time.Second), delayed("sooner", time.Hour), delayed("now", time.Hour))
	reschedule := func(id string, d time.Duration) *dmsv1.RescheduleMessageResponse {
		t.Helper()
		resp, err := e.Producer().RescheduleMessage(context.Background(), &dmsv1.RescheduleMessageRequest{Queue: e.queue.GetName(), ScheduleId: id, Delay: durationpb.New(d)})
		require.NoError(t, err)
		return resp
	}
	later := reschedule(res[0].GetScheduleId(), time.Minute)
	require.Equal(t, res[0].GetMessageId(), later.GetMessageId())
	require.NotEqual(t, res[0].GetScheduleId(), later.GetScheduleId())
	require.Equal(t, start.Add(time.Minute), later.GetDeliverTime().AsTime())
	sooner := reschedule(res[1].GetScheduleId(), 20*time.Second)
	reschedule(res[2].GetScheduleId(), 0) // released at once
	require.Equal(t, []string{"now"}, testserver.Bodies(e.receiveAll(t, 1)))

	_, err := e.Producer().RescheduleMessage(context.Background(), &dmsv1.RescheduleMessageRequest{Queue: e.queue.GetName(), ScheduleId: res[0].GetScheduleId(), Delay: durationpb.New(time.Second)})
	require.Equal(t, "SCHEDULE_NOT_FOUND", rpcstatus.Reason(err), "the old id is gone: %v", err)
	_, err = e.Producer().RescheduleMessage(context.Background(), &dmsv1.RescheduleMessageRequest{Queue: e.queue.GetName(), ScheduleId: later.GetScheduleId()})
	require.Equal(t, "DELAY_INVALID", rpcstatus.Reason(err), "a reschedule needs a time: %v", err)
	require.EqualValues(t, 2, e.stats(t).GetScheduledMessageCount())
	require.Equal(t, start.Add(20*time.Second), e.stats(t).GetNextScheduledTime().AsTime())

	e.clock.Advance(20 * time.Second)
	got := e.receiveAll(t, 1)
	require.Equal(t, "sooner", string(got[0].GetMessage().GetBody()))
	require.Equal(t, res[1].GetMessageId(), got[0].GetMessageId())
	_, err = e.Producer().RescheduleMessage(context.Background(), &dmsv1.RescheduleMessageRequest{Queue: e.queue.GetName(), ScheduleId: sooner.GetScheduleId(), Delay: durationpb.New(time.Second)})
	require.Equal(t, "SCHEDULE_ALREADY_RELEASED", rpcstatus.Reason(err))

	e.clock.Advance(40*time.Second - time.Millisecond)
	e.stillHeld(t, 2)
	e.clock.Advance(time.Hour)
	got = e.receiveAll(t, 1)
	require.Equal(t, "later", string(got[0].GetMessage().GetBody()))
	require.Equal(t, res[0].GetMessageId(), got[0].GetMessageId())
	e.stillHeld(t, 3)
}

func TestDelayValidation(t *testing.T) {
	e := newEnv(t, nil)
	kafka := e.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "kafka", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT})
	tests := []struct {
		name   string
		queue  *dmsv1.Queue
		msg    *dmsv1.Message
		reason string
	}{
		{"Kafka queue", kafka, delayed("x", time.Second), "DELAY_NOT_ALLOWED"},
		{"Kafka queue, deliver time", kafka, &dmsv1.Message{DeliverTime: timestamppb.New(start.Add(time.Minute))}, "DELAY_NOT_ALLOWED"},
		{"over 7 days", e.queue, delayed("x", 7*24*time.Hour+time.Millisecond), "DELAY_INVALID"},
		{"deliver time over 7 days ahead", e.queue, &dmsv1.Message{DeliverTime: timestamppb.New(start.Add(8 * 24 * time.Hour))}, "DELAY_INVALID"},
		{"negative", e.queue, delayed("x", -time.Second), "DELAY_INVALID"},
		{"both", e.queue, &dmsv1.Message{Delay: durationpb.New(time.Second), DeliverTime: timestamppb.New(start)}, "DELAY_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: tt.queue.GetName(), Messages: []*dmsv1.Message{tt.msg}})
			require.Equal(t, tt.reason, rpcstatus.Reason(err), "%v", err)
		})
	}
	_, err := e.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: kafka.GetName(),
		Messages: []*dmsv1.Message{{Body: []byte("x"), Delay: durationpb.New(0)}}})
	require.NoError(t, err, "a delay of 0 is no delay, even on a Kafka queue")
	res := e.send(t, delayed("max", 7*24*time.Hour))
	require.Equal(t, start.Add(7*24*time.Hour), res[0].GetDeliverTime().AsTime())
}

func TestIdempotentDelayedSend(t *testing.T) {
	e := newEnv(t, nil)
	send := func() *dmsv1.SendMessagesResponse {
		resp, err := e.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: e.queue.GetName(),
			Messages: []*dmsv1.Message{delayed("a", time.Minute), {Body: []byte("b")}}, IdempotenceKey: "producer/1"})
		require.NoError(t, err)
		return resp
	}
	first := send()
	require.True(t, proto.Equal(first, send()), "a retry returns the first attempt's results")
	require.EqualValues(t, 1, e.stats(t).GetScheduledMessageCount())
	require.EqualValues(t, 1, e.released(t))
}

func TestPendingTimersSurviveARestart(t *testing.T) {
	e := newEnv(t, nil)
	delays := []time.Duration{time.Second, 20 * time.Minute, 45 * time.Minute, 2 * time.Hour, 5 * time.Hour, 3 * 24 * time.Hour}
	var msgs []*dmsv1.Message
	for i, d := range delays {
		for j := range 5 {
			msgs = append(msgs, delayed(fmt.Sprintf("%d/%d", i, j), d))
		}
	}
	res := e.send(t, msgs...)
	cancelled := e.cancel(t, res[7].GetScheduleId(), res[27].GetScheduleId())
	require.True(t, cancelled[0].GetCancelled() && cancelled[1].GetCancelled())
	e.clock.Advance(time.Second)
	first := e.receiveAll(t, 5)

	e.Restart(t)
	require.EqualValues(t, len(msgs)-7, e.stats(t).GetScheduledMessageCount(), "pending timers are counted again")
	more := e.send(t, delayed("after restart", time.Hour))
	require.NotEmpty(t, more[0].GetScheduleId())

	seen := map[string]bool{}
	for _, m := range first {
		seen[m.GetMessageId()] = true
	}
	for _, step := range []time.Duration{30 * time.Minute, 30 * time.Minute, 2 * time.Hour, 3 * time.Hour, 3 * 24 * time.Hour} {
		e.clock.Advance(step)
		now := e.clock.Now()
		due := 0
		for _, d := range delays {
			if !start.Add(d).After(now) {
				due += 5
			}
		}
		if !start.Add(time.Second + time.Hour).After(now) {
			due++
		}
		if !start.Add(delays[1]).After(now) {
			due-- // res[7] was cancelled
		}
		if !start.Add(delays[5]).After(now) {
			due-- // res[27] was cancelled
		}
		for _, m := range e.receiveAll(t, due-len(seen)) {
			require.False(t, seen[m.GetMessageId()], "released twice: %s", m.GetMessage().GetBody())
			require.False(t, m.GetPublishTime().AsTime().After(now), "published in the future")
			seen[m.GetMessageId()] = true
		}
		e.stillHeld(t, int64(due))
	}
	require.Len(t, seen, len(msgs)-2+1)
	require.NotContains(t, seen, res[7].GetMessageId())
	require.NotContains(t, seen, res[27].GetMessageId())
}

// A batch that a crashed owner marked as being released is published again
// after a restart, and storage stores it once whether or not the crashed
// owner got to publish it.
func TestBatchCaughtByACrashIsPublishedOnce(t *testing.T) {
	for _, published := range []bool{false, true} {
		t.Run(fmt.Sprintf("published before the crash: %v", published), func(t *testing.T) {
			e := newEnv(t, nil)
			res := e.send(t, delayed("a", time.Second), delayed("b", time.Second))
			storage := storagev1.NewStorageServiceClient(e.Internal)
			bucket := logid.TimerBucket(e.queue.GetId(), start.Add(time.Second).UnixMilli()/3_600_000)
			// What a crash between the two markers leaves behind.
			payload, err := proto.Marshal(&schedulerv1.TimerMarker{ReleasingOffsets: []int64{0, 1}})
			require.NoError(t, err)
			marker, err := storage.Append(context.Background(), &storagev1.AppendRequest{Log: bucket, Records: []*storagev1.Record{{TimestampMs: start.UnixMilli(), Payload: payload}}})
			require.NoError(t, err)
			if published {
				_, err := ingestv1.NewIngestServiceClient(e.Internal).Publish(context.Background(), &ingestv1.PublishRequest{
					QueueId:        e.queue.GetId(),
					Messages:       []*dmsv1.Message{{Body: []byte("a")}, {Body: []byte("b")}},
					MessageIds:     []string{res[0].GetMessageId(), res[1].GetMessageId()},
					IdempotenceKey: fmt.Sprintf("%s@%d", logid.Key(bucket), marker.GetFirstOffset()),
				})
				require.NoError(t, err)
			}
			e.Restart(t)
			e.clock.Advance(time.Second)
			got := e.receiveAll(t, 2)
			require.ElementsMatch(t, []string{res[0].GetMessageId(), res[1].GetMessageId()}, []string{got[0].GetMessageId(), got[1].GetMessageId()})
			e.stillHeld(t, 2)
			status, err := schedulerv1.NewSchedulerServiceClient(e.Internal).GetStatus(context.Background(), &schedulerv1.GetStatusRequest{})
			require.NoError(t, err)
			redelivered := int64(0)
			for _, sh := range status.GetShards() {
				redelivered += sh.GetRedeliveredAfterRestart()
			}
			require.EqualValues(t, 2, redelivered)
		})
	}
}

// The REST mapping of the native API (grpc-gateway).
func TestRESTMapping(t *testing.T) {
	e := newEnv(t, nil)
	base := "http://" + e.HTTPAddr + "/v1/" + e.queue.GetName()
	post := func(path string, body any, out any) {
		t.Helper()
		data, err := json.Marshal(body)
		require.NoError(t, err)
		resp, err := http.Post(base+path, "application/json", bytes.NewReader(data))
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
		require.NoError(t, json.Unmarshal(raw, out))
	}
	var sent struct {
		Results []struct {
			MessageID   string `json:"messageId"`
			ScheduleID  string `json:"scheduleId"`
			DeliverTime string `json:"deliverTime"`
		} `json:"results"`
	}
	post("/messages:send", map[string]any{"messages": []any{
		map[string]any{"body": "aGk=", "delay": "30s"},
		map[string]any{"body": "aGk=", "deliverTime": start.Add(time.Hour).Format(time.RFC3339)},
	}}, &sent)
	require.Len(t, sent.Results, 2)
	require.Equal(t, start.Add(30*time.Second).Format(time.RFC3339), sent.Results[0].DeliverTime)

	var rescheduled struct {
		ScheduleID string `json:"scheduleId"`
		MessageID  string `json:"messageId"`
	}
	post("/scheduledMessages/"+sent.Results[0].ScheduleID+":reschedule", map[string]any{"delay": "90s"}, &rescheduled)
	require.Equal(t, sent.Results[0].MessageID, rescheduled.MessageID)

	var cancelled struct {
		Results []struct {
			Cancelled   bool   `json:"cancelled"`
			ErrorReason string `json:"errorReason"`
		} `json:"results"`
	}
	post("/scheduledMessages:cancel", map[string]any{"scheduleIds": []string{rescheduled.ScheduleID, sent.Results[0].ScheduleID}}, &cancelled)
	require.True(t, cancelled.Results[0].Cancelled)
	require.Equal(t, "SCHEDULE_NOT_FOUND", cancelled.Results[1].ErrorReason)

	resp, err := http.Get(base)
	require.NoError(t, err)
	defer resp.Body.Close()
	var got struct {
		Queue struct {
			ScheduledMessageCount string `json:"scheduledMessageCount"`
			NextScheduledTime     string `json:"nextScheduledTime"`
		} `json:"queue"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	q := got.Queue
	require.Equal(t, "1", q.ScheduledMessageCount)
	require.Equal(t, start.Add(time.Hour).Format(time.RFC3339), q.NextScheduledTime)
}

// Buckets go away once everything in them is settled and their hour is
// over, and with their queue.
func TestBucketsAreDeleted(t *testing.T) {
	e := newEnv(t, nil)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.EtcdEndpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	registered := func(q *dmsv1.Queue) int64 {
		resp, err := cli.Get(context.Background(), catalog.TimerBucketsOfQueuePrefix(q.GetId()), clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		return resp.Count
	}
	stored := func(q *dmsv1.Queue) int {
		entries, _ := os.ReadDir(filepath.Join(e.DataDir, "storage", "t", q.GetId()))
		return len(entries)
	}

	e.send(t, delayed("soon", time.Second), delayed("tomorrow", 24*time.Hour))
	require.EqualValues(t, 2, registered(e.queue))
	require.Equal(t, 2, stored(e.queue))
	e.clock.Advance(time.Second)
	e.receiveAll(t, 1)
	e.clock.Advance(time.Hour)
	require.Eventually(t, func() bool { return registered(e.queue) == 1 && stored(e.queue) == 1 }, 10*time.Second, 10*time.Millisecond,
		"the settled bucket of a past hour is deleted")

	other := newEnvOnServer(t, e, "doomed")
	other.send(t, delayed("never", time.Minute), delayed("never either", 5*time.Hour))
	require.EqualValues(t, 2, registered(other.queue))
	_, err = e.Queues().DeleteQueue(context.Background(), &dmsv1.DeleteQueueRequest{Name: other.queue.GetName()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return registered(other.queue) == 0 && stored(other.queue) == 0 }, 10*time.Second, 10*time.Millisecond,
		"a deleted queue's buckets are deleted")
	e.clock.Advance(6 * time.Hour)
	e.stillHeld(t, 1)
	require.EqualValues(t, 1, e.stats(t).GetScheduledMessageCount())
}
