// Package ingest is the ingest role, the producers' front door: it
// validates batches, assigns message ids, picks the partition and appends the
// batch to storage, answering once it is durable. Delayed messages go to the
// scheduler role instead, which answers once it stored them durably.
package ingest

import (
	"context"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/storage/logid"
)

// Engine publishes batches into queues.
type Engine struct {
	storage   storagev1.StorageServiceClient
	scheduler schedulerv1.SchedulerServiceClient
	now       func() time.Time

	// nextPartition spreads the batches of each NORMAL queue round robin;
	// a whole batch goes to one partition so that it costs one append.
	nextPartition sync.Map // queue id → *atomic.Uint32
}

// NewEngine returns an engine appending through a storage client and
// handing delayed messages to the scheduler.
func NewEngine(storage storagev1.StorageServiceClient, scheduler schedulerv1.SchedulerServiceClient, now func() time.Time) *Engine {
	return &Engine{storage: storage, scheduler: scheduler, now: now}
}

// Publish validates msgs as a whole and stores them in q. Messages without
// an ordering key go together to one partition (round robin per batch, one
// append); keyed messages go to the partition of their key. Messages with a
// delay or a deliver time in the future go to the scheduler instead, which
// stores them durably before Publish returns and publishes them when due.
// ids, when given, are the message ids to store the messages under.
func (e *Engine) Publish(ctx context.Context, q *metadatav1.QueueRecord, msgs []*dmsv1.Message, ids []string, idempotenceKey string) ([]*dmsv1.SendResult, error) {
	return e.PublishFrom(ctx, q, msgs, ids, idempotenceKey, nil)
}

// PublishFrom is Publish with who sent the batch: producer, when given, is
// stored on the first record of each append, for message traces (one per
// batch, not per message).
func (e *Engine) PublishFrom(ctx context.Context, q *metadatav1.QueueRecord, msgs []*dmsv1.Message, ids []string, idempotenceKey string, producer *storagev1.ProducerInfo) ([]*dmsv1.SendResult, error) {
	if err := message.ValidateBatch(msgs); err != nil {
		return nil, err
	}
	if err := message.ValidateIdempotenceKey(idempotenceKey); err != nil {
		return nil, err
	}
	if len(ids) > 0 && len(ids) != len(msgs) {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "ingest: %d message ids for %d messages", len(ids), len(msgs))
	}
	now := e.now()
	dues, err := dueTimes(q, msgs, now)
	if err != nil {
		return nil, err
	}
	batchPartition := e.roundRobin(q)
	if idempotenceKey != "" {
		// A retry must reach the partition of the first attempt.
		batchPartition = keyPartition(idempotenceKey, keyPartitions(q))
	}
	ts := now.UnixMilli()
	results := make([]*dmsv1.SendResult, len(msgs))
	var (
		order     []int32
		byPart    = map[int32][]*storagev1.Record{}
		positions = map[int32][]int{}
		entries   []*schedulerv1.ScheduleEntry
		entryPos  []int
	)
	for i, m := range msgs {
		id, err := messageID(ids, i)
		if err != nil {
			return nil, err
		}
		if dues[i] > 0 {
			entries = append(entries, &schedulerv1.ScheduleEntry{MessageId: id, Message: m, DueMs: dues[i]})
			entryPos = append(entryPos, i)
			results[i] = &dmsv1.SendResult{MessageId: id, DeliverTime: timestamppb.New(time.UnixMilli(dues[i]))}
			continue
		}
		if m.GetDelay() != nil || m.GetDeliverTime() != nil {
			// A delay of 0 or a deliver time already passed: stored at
			// once, without the scheduling fields.
			m = proto.CloneOf(m)
			m.Delay, m.DeliverTime = nil, nil
		}
		p := batchPartition
		if m.GetOrderingKey() != "" {
			p = keyPartition(m.GetOrderingKey(), keyPartitions(q))
		}
		if _, seen := byPart[p]; !seen {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], &storagev1.Record{TimestampMs: ts, MessageId: id, Message: m})
		positions[p] = append(positions[p], i)
		results[i] = &dmsv1.SendResult{MessageId: id, Partition: p}
	}
	appendKey := idempotenceKey
	if appendKey == "" && q.GetReplicationFactor() > 1 {
		// A replicated queue's leader can change under an append; the key
		// lets the append be sent again to the new leader without storing
		// it twice.
		appendKey = "ingest:" + uuid.NewString()
	}
	for _, p := range order {
		if producer != nil {
			byPart[p][0].Producer = producer
		}
		resp, err := e.appendRetrying(ctx, &storagev1.AppendRequest{
			Log: logid.Partition(q.GetId(), p), Records: byPart[p], IdempotenceKey: appendKey, Durability: durability(q),
		})
		if err != nil {
			return nil, err
		}
		for j, i := range positions[p] {
			results[i].Offset = resp.GetFirstOffset() + int64(j)
			if resp.GetDuplicate() && j < len(resp.GetMessageIds()) {
				results[i].MessageId = resp.GetMessageIds()[j]
			}
		}
	}
	if len(entries) > 0 {
		resp, err := e.scheduler.Schedule(ctx, &schedulerv1.ScheduleRequest{QueueId: q.GetId(), Entries: entries, IdempotenceKey: idempotenceKey})
		if err != nil {
			return nil, err
		}
		for j, i := range entryPos {
			results[i].ScheduleId = resp.GetScheduleIds()[j]
			if j < len(resp.GetMessageIds()) {
				results[i].MessageId = resp.GetMessageIds()[j]
			}
		}
	}
	return results, nil
}

// retryFor bounds how long an append with an idempotence key is retried
// through a failover: long enough for a leader to be replaced (a few
// seconds), short enough for a producer to hear of a real outage.
const retryFor = 15 * time.Second

// notEnoughReplicasWait bounds the retries of a send refused for too few
// in-sync replicas.
const notEnoughReplicasWait = 3 * time.Second

// appendRetrying appends, and when the request carries an idempotence key
// repeats the append after a failure that leaves its outcome unknown or
// passing (a leader gone mid-append, too few in-sync replicas during a
// failover): the key makes storage keep it once.
func (e *Engine) appendRetrying(ctx context.Context, req *storagev1.AppendRequest) (*storagev1.AppendResponse, error) {
	giveUp := time.Now().Add(retryFor)
	backoff := 50 * time.Millisecond
	for {
		resp, err := e.storage.Append(ctx, req)
		if err == nil || req.GetIdempotenceKey() == "" || !retryable(err) || time.Now().Add(backoff).After(giveUp) {
			return resp, err
		}
		if rpcstatus.Reason(err) == errs.ErrNotEnoughReplicas.Reason {
			// The in-sync replicas are too few: worth a short wait while a
			// follower catches up, not the whole failover budget.
			if short := time.Now().Add(notEnoughReplicasWait); short.Before(giveUp) {
				giveUp = short
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, err
		}
		backoff = min(backoff*2, time.Second)
	}
}

// retryable reports a failure after which an append may succeed if sent
// again: the node or leader was unreachable or replaced, or the in-sync
// replicas were too few for a moment.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.FailedPrecondition:
		return rpcstatus.Reason(err) == errs.ErrFenced.Reason
	}
	return false
}

// messageID returns the given id of message i, or a new one.
func messageID(ids []string, i int) (string, error) {
	if len(ids) > 0 {
		return ids[i], nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", errs.Wrapf(errs.ErrInternal, "ingest: message id: %v", err)
	}
	return id.String(), nil
}

// dueTimes returns when each message is due, 0 for those due at once.
func dueTimes(q *metadatav1.QueueRecord, msgs []*dmsv1.Message, now time.Time) ([]int64, error) {
	dues := make([]int64, len(msgs))
	for i, m := range msgs {
		due, err := message.DueTime(m.GetDelay(), m.GetDeliverTime(), now)
		if err != nil {
			return nil, errs.Wrapf(errs.Of(err), "message %d: %v", i, err)
		}
		if message.IsDelayed(m) {
			if err := message.DelayAllowed(q.GetMode()); err != nil {
				return nil, errs.Wrapf(errs.Of(err), "message %d: %v", i, err)
			}
		}
		dues[i] = due
	}
	return dues, nil
}

// CancelScheduled cancels scheduled messages of q.
func (e *Engine) CancelScheduled(ctx context.Context, q *metadatav1.QueueRecord, scheduleIDs []string) ([]*dmsv1.CancelResult, error) {
	if len(scheduleIDs) == 0 {
		return nil, errs.Wrapf(errs.ErrBatchEmpty, "no schedule id to cancel")
	}
	if len(scheduleIDs) > message.MaxBatchMessages {
		return nil, errs.Wrapf(errs.ErrBatchTooLarge, "at most %d schedule ids per call, got %d", message.MaxBatchMessages, len(scheduleIDs))
	}
	resp, err := e.scheduler.Cancel(ctx, &schedulerv1.CancelRequest{QueueId: q.GetId(), ScheduleIds: scheduleIDs})
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

// Reschedule moves a scheduled message of q to a new time: a delay from now
// or a deliver time, exactly one of them. A delay of 0 or a time already
// passed releases it at once.
func (e *Engine) Reschedule(ctx context.Context, q *metadatav1.QueueRecord, scheduleID string, delay *durationpb.Duration, deliverTime *timestamppb.Timestamp) (*dmsv1.RescheduleMessageResponse, error) {
	if (delay == nil) == (deliverTime == nil) {
		return nil, errs.Wrapf(errs.ErrDelayInvalid, "give exactly one of delay and deliver_time")
	}
	now := e.now()
	due, err := message.DueTime(delay, deliverTime, now)
	if err != nil {
		return nil, err
	}
	if due == 0 {
		due = now.UnixMilli()
	}
	resp, err := e.scheduler.Reschedule(ctx, &schedulerv1.RescheduleRequest{QueueId: q.GetId(), ScheduleId: scheduleID, DueMs: due})
	if err != nil {
		return nil, err
	}
	return &dmsv1.RescheduleMessageResponse{ScheduleId: resp.GetScheduleId(), MessageId: resp.GetMessageId(), DeliverTime: timestamppb.New(time.UnixMilli(due))}, nil
}

// durability is how a queue's appends are answered: a KAFKA_HT queue after
// the leader's write, every other after the fsync.
func durability(q *metadatav1.QueueRecord) storagev1.Durability {
	if q.GetMode() == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT {
		return storagev1.Durability_DURABILITY_ASYNC
	}
	return storagev1.Durability_DURABILITY_SYNC
}

// keyPartitions is how many partitions keys are spread over: those the
// queue was created with, so that a key keeps its partition (and its
// order) when partitions are added.
func keyPartitions(q *metadatav1.QueueRecord) int32 {
	if n := q.GetKeyPartitions(); n > 0 {
		return n
	}
	return q.GetPartitionCount()
}

// keyPartition maps a key to a partition, the same way every time.
func keyPartition(key string, partitions int32) int32 {
	if partitions <= 1 {
		return 0
	}
	return int32(crc32.ChecksumIEEE([]byte(key)) % uint32(partitions))
}

func (e *Engine) roundRobin(q *metadatav1.QueueRecord) int32 {
	if q.GetPartitionCount() <= 1 {
		return 0
	}
	c, _ := e.nextPartition.LoadOrStore(q.GetId(), new(atomic.Uint32))
	return int32(c.(*atomic.Uint32).Add(1) % uint32(q.GetPartitionCount()))
}
