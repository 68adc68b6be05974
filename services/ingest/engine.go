// Package ingest is the ingest role, the producers' front door: it
// validates batches, assigns message ids, picks the partition and appends the
// batch to storage, answering once it is durable. Delayed messages go to the
// scheduler role instead, which answers once it stored them durably.
package ingest

import (
	"context"
	"hash/crc32"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Batch limits of the native API.
const (
	MaxBatchMessages = 1000
	MaxBatchBytes    = 8 << 20
	MaxTags          = 3
	// MaxOrderingKeyBytes bounds the ordering key (SQS allows 128 too).
	MaxOrderingKeyBytes = 128
)

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

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
	if err := Validate(msgs); err != nil {
		return nil, err
	}
	if len(idempotenceKey) > MaxOrderingKeyBytes {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "an idempotence key has at most %d bytes, got %d", MaxOrderingKeyBytes, len(idempotenceKey))
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
		batchPartition = keyPartition(idempotenceKey, q.GetPartitionCount())
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
			p = keyPartition(m.GetOrderingKey(), q.GetPartitionCount())
		}
		if _, seen := byPart[p]; !seen {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], &storagev1.Record{TimestampMs: ts, MessageId: id, Message: m})
		positions[p] = append(positions[p], i)
		results[i] = &dmsv1.SendResult{MessageId: id, Partition: p}
	}
	for _, p := range order {
		resp, err := e.storage.Append(ctx, &storagev1.AppendRequest{Log: catalog.PartitionLog(q.GetId(), p), Records: byPart[p], IdempotenceKey: idempotenceKey})
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
		due, err := DueTime(m.GetDelay(), m.GetDeliverTime(), now)
		if err != nil {
			return nil, errs.Wrapf(errs.Of(err), "message %d: %v", i, err)
		}
		if (m.GetDelay() != nil && m.GetDelay().AsDuration() > 0) || m.GetDeliverTime() != nil {
			if err := delayAllowed(q); err != nil {
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
	if len(scheduleIDs) > MaxBatchMessages {
		return nil, errs.Wrapf(errs.ErrBatchTooLarge, "at most %d schedule ids per call, got %d", MaxBatchMessages, len(scheduleIDs))
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
	due, err := DueTime(delay, deliverTime, now)
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

// MaxDelay is how far ahead a message can be scheduled: 7 days, the DMS
// limit of delay_time (604 800 000 ms).
const MaxDelay = 7 * 24 * time.Hour

// DueTime returns when a message with this delay or deliver time is due,
// in Unix milliseconds rounded up so that it is never released early, or 0
// when it is due at once (no delay, a delay of 0, a time already passed).
func DueTime(delay *durationpb.Duration, deliverTime *timestamppb.Timestamp, now time.Time) (int64, error) {
	var at time.Time
	switch {
	case delay != nil && deliverTime != nil:
		return 0, errs.Wrapf(errs.ErrDelayInvalid, "a message has a delay or a deliver_time, not both")
	case delay != nil:
		if err := delay.CheckValid(); err != nil {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "delay: %v", err)
		}
		d := delay.AsDuration()
		if d < 0 || d > MaxDelay {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "delay must be 0 to %v, got %v", MaxDelay, d)
		}
		if d == 0 {
			return 0, nil
		}
		at = now.Add(d)
	case deliverTime != nil:
		if err := deliverTime.CheckValid(); err != nil {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "deliver_time: %v", err)
		}
		at = deliverTime.AsTime()
		if at.After(now.Add(MaxDelay)) {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "deliver_time must be at most %v ahead, got %v", MaxDelay, at.Sub(now).Round(time.Millisecond))
		}
		if !at.After(now) {
			return 0, nil
		}
	default:
		return 0, nil
	}
	due := at.UnixMilli()
	if at.After(time.UnixMilli(due)) {
		due++
	}
	return due, nil
}

// delayAllowed refuses delays on queues other than NORMAL and FIFO (the
// DMS rule for Kafka queues; AMQP queues have no delay either).
func delayAllowed(q *metadatav1.QueueRecord) error {
	switch q.GetMode() {
	case dmsv1.QueueMode_QUEUE_MODE_UNSPECIFIED, dmsv1.QueueMode_QUEUE_MODE_NORMAL, dmsv1.QueueMode_QUEUE_MODE_FIFO:
		return nil
	}
	return errs.Wrapf(errs.ErrDelayNotAllowed, "a %s queue does not take delayed messages (delay or deliver_time); only NORMAL and FIFO queues do",
		strings.TrimPrefix(q.GetMode().String(), "QUEUE_MODE_"))
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

// Validate checks a batch against the limits; the first offending message
// is named in the error, and nothing of the batch is stored.
func Validate(msgs []*dmsv1.Message) error {
	if len(msgs) == 0 {
		return errs.Wrapf(errs.ErrBatchEmpty, "the batch has no message")
	}
	if len(msgs) > MaxBatchMessages {
		return errs.Wrapf(errs.ErrBatchTooLarge, "a batch has at most %d messages, got %d", MaxBatchMessages, len(msgs))
	}
	total := 0
	for i, m := range msgs {
		size, err := validateMessage(m)
		if err != nil {
			return errs.Wrapf(errs.Of(err), "message %d: %v", i, err)
		}
		total += size
	}
	if total > MaxBatchBytes {
		return errs.Wrapf(errs.ErrBatchTooLarge, "a batch has at most %d bytes of messages, got %d", MaxBatchBytes, total)
	}
	return nil
}

// MessageSize is the size counted against the message limit: the body plus
// attribute names and values.
func MessageSize(m *dmsv1.Message) int {
	size := len(m.GetBody())
	for name, v := range m.GetAttributes() {
		size += len(name) + 8 + len(v.GetStringValue())
	}
	return size
}

func validateMessage(m *dmsv1.Message) (int, error) {
	if len(m.GetTags()) > MaxTags {
		return 0, errs.Wrapf(errs.ErrTagInvalid, "a message has at most %d tags, got %d", MaxTags, len(m.GetTags()))
	}
	if err := ValidateTags(m.GetTags()); err != nil {
		return 0, err
	}
	if len(m.GetOrderingKey()) > MaxOrderingKeyBytes {
		return 0, errs.Wrapf(errs.ErrRequestInvalid, "an ordering key has at most %d bytes, got %d", MaxOrderingKeyBytes, len(m.GetOrderingKey()))
	}
	for name, v := range m.GetAttributes() {
		if len(name) < 1 || len(name) > 64 {
			return 0, errs.Wrapf(errs.ErrAttributeInvalid, "attribute name %q must be 1 to 64 characters", name)
		}
		if v.GetKind() == nil {
			return 0, errs.Wrapf(errs.ErrAttributeInvalid, "attribute %q has no value", name)
		}
	}
	size := MessageSize(m)
	if size > catalog.MaxMessageBytes {
		return 0, errs.Wrapf(errs.ErrMessageTooLarge, "the message size is %d, larger than the size limit %d", size, catalog.MaxMessageBytes)
	}
	return size, nil
}

// ValidateTags checks the form of tags (of a message or of a filter).
func ValidateTags(tags []string) error {
	for _, t := range tags {
		if !tagPattern.MatchString(t) {
			return errs.Wrapf(errs.ErrTagInvalid, "tag %q must be 1 to 64 characters of [A-Za-z0-9_-]", t)
		}
	}
	return nil
}
