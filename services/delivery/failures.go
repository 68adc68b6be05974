package delivery

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Why a delivery attempt failed, as recorded on dead letters.
const (
	failureByConsumer = "FAILED_BY_CONSUMER"
	failureTimeout    = "VISIBILITY_TIMEOUT"
	failureRedeliver  = "REDELIVER_REQUESTED"
)

// RetryDelay is the shortest time a REDELIVER ack hides a message (the
// DMS rule: redelivered messages come back after at least 30 s).
const RetryDelay = 30 * time.Second

// expire turns in-flight deliveries whose visibility passed into failed
// attempts, and releases retries that are due.
func (e *Engine) expire(ctx context.Context, c *consumption, now time.Time, batch *stateBatch) error {
	for pi, p := range c.parts {
		for _, offset := range p.due(now) {
			if err := e.fail(ctx, c, int32(pi), offset, failureTimeout, now, batch); err != nil {
				return err
			}
		}
	}
	return nil
}

// fail handles one failed attempt: the message moves to the dead-letter
// queue when it failed max_consume_count times, otherwise it is available
// again at once (fail, timeout) or after the retry delay (redeliver).
func (e *Engine) fail(ctx context.Context, c *consumption, pi int32, offset int64, reason string, now time.Time, batch *stateBatch) error {
	p := c.parts[pi]
	rec := batch.rec(pi)
	if c.kind != kindDeadLetters {
		e.metrics.Failed(c.queue, c.group, reason)
	}
	if c.deadLettersEnabled() && p.attempts[offset] >= c.queue.GetMaxConsumeCount() {
		r, err := e.readOne(ctx, p.log, offset)
		if err != nil {
			return err
		}
		if r != nil {
			batch.deadLetters = append(batch.deadLetters, &storagev1.Record{
				TimestampMs: now.UnixMilli(),
				MessageId:   r.GetRecord().GetMessageId(),
				Message:     r.GetRecord().GetMessage(),
				DeadLetter: &dmsv1.DeadLetterInfo{
					FailureCount:      p.attempts[offset],
					LastFailureReason: reason,
					DeadLetterTime:    timestamppb.New(now),
					SourcePartition:   pi,
					SourceOffset:      offset,
				},
			})
		}
		p.settle(offset)
		rec.DeadLetteredOffsets = append(rec.DeadLetteredOffsets, offset)
		return nil
	}
	if reason == failureRedeliver {
		at := now.Add(e.cfg.retryDelay(p.attempts[offset]))
		p.retry(offset, at)
		rec.RetryOffsets = append(rec.RetryOffsets, offset)
		rec.RetryAtMs = at.UnixMilli()
		return nil
	}
	p.release(offset)
	rec.FailedOffsets = append(rec.FailedOffsets, offset)
	batch.woke = true
	return nil
}
