// Package ingest is the ingest role, the producers' front door: it
// validates batches, assigns message ids, picks the partition and appends the
// batch to storage, answering once it is durable.
package ingest

import (
	"context"
	"hash/crc32"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
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
	storage storagev1.StorageServiceClient
	now     func() time.Time

	// nextPartition spreads the batches of each NORMAL queue round robin;
	// a whole batch goes to one partition so that it costs one append.
	nextPartition sync.Map // queue id → *atomic.Uint32
}

// NewEngine returns an engine appending through a storage client.
func NewEngine(storage storagev1.StorageServiceClient, now func() time.Time) *Engine {
	return &Engine{storage: storage, now: now}
}

// Publish validates msgs as a whole and stores them in q. Messages without
// an ordering key go together to one partition (round robin per batch, one
// append); keyed messages go to the partition of their key.
func (e *Engine) Publish(ctx context.Context, q *metadatav1.QueueRecord, msgs []*dmsv1.Message, idempotenceKey string) ([]*dmsv1.SendResult, error) {
	if err := Validate(msgs); err != nil {
		return nil, err
	}
	if len(idempotenceKey) > MaxOrderingKeyBytes {
		return nil, errs.Wrapf(errs.ErrRequestInvalid, "an idempotence key has at most %d bytes, got %d", MaxOrderingKeyBytes, len(idempotenceKey))
	}
	batchPartition := e.roundRobin(q)
	if idempotenceKey != "" {
		// A retry must reach the partition of the first attempt.
		batchPartition = keyPartition(idempotenceKey, q.GetPartitionCount())
	}
	ts := e.now().UnixMilli()
	results := make([]*dmsv1.SendResult, len(msgs))
	var (
		order     []int32
		byPart    = map[int32][]*storagev1.Record{}
		positions = map[int32][]int{}
	)
	for i, m := range msgs {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, errs.Wrapf(errs.ErrInternal, "ingest: message id: %v", err)
		}
		p := batchPartition
		if m.GetOrderingKey() != "" {
			p = keyPartition(m.GetOrderingKey(), q.GetPartitionCount())
		}
		if _, seen := byPart[p]; !seen {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], &storagev1.Record{TimestampMs: ts, MessageId: id.String(), Message: m})
		positions[p] = append(positions[p], i)
		results[i] = &dmsv1.SendResult{MessageId: id.String(), Partition: p}
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
	return results, nil
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
