package scheduler

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// schedule appends entries to the buckets of their hours, one append per
// bucket, and indexes them once durable. It returns their schedule ids and
// message ids (those of the first attempt when idempotenceKey repeats one).
func (sh *shard) schedule(ctx context.Context, queueID string, entries []*schedulerv1.ScheduleEntry, idempotenceKey string) ([]string, []string, error) {
	var hours []int64
	byHour := map[int64][]int{}
	for i, en := range entries {
		h := hourOf(en.GetDueMs())
		if _, seen := byHour[h]; !seen {
			hours = append(hours, h)
		}
		byHour[h] = append(byHour[h], i)
	}
	ids, messageIDs := make([]string, len(entries)), make([]string, len(entries))
	for _, h := range hours {
		idx := byHour[h]
		records := make([]*storagev1.Record, len(idx))
		for j, i := range idx {
			en := entries[i]
			records[j] = &storagev1.Record{TimestampMs: en.GetDueMs(), MessageId: en.GetMessageId(), Message: en.GetMessage()}
		}
		resp, err := sh.appendEntries(ctx, queueID, h, records, idempotenceKey)
		if err != nil {
			return nil, nil, err
		}
		for j, i := range idx {
			ids[i] = scheduleID{queueID: queueID, hour: h, offset: resp.GetFirstOffset() + int64(j)}.String()
			messageIDs[i] = entries[i].GetMessageId()
			if resp.GetDuplicate() && j < len(resp.GetMessageIds()) {
				messageIDs[i] = resp.GetMessageIds()[j]
			}
		}
	}
	return ids, messageIDs, nil
}

// appendEntries appends scheduled messages to a bucket and indexes them.
func (sh *shard) appendEntries(ctx context.Context, queueID string, hour int64, records []*storagev1.Record, idempotenceKey string) (*storagev1.AppendResponse, error) {
	b, err := sh.acquire(ctx, queueID, hour)
	if err != nil {
		return nil, err
	}
	// The outcome must be known even if the caller gives up: an append
	// that became durable without being indexed would be released only
	// after a restart.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	resp, err := sh.e.storage.Append(actx, &storagev1.AppendRequest{Log: b.log, Records: records, IdempotenceKey: idempotenceKey, WriterEpoch: sh.epoch})
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b.busy--
	if err != nil {
		return nil, err
	}
	first := resp.GetFirstOffset()
	if last := first + int64(len(records)) - 1; last >= 1<<offsetBits {
		return nil, errs.Wrapf(errs.ErrInternal, "scheduler: timer bucket %s is full", logid.Key(b.log))
	}
	for j, r := range records {
		b.add(first+int64(j), r.GetTimestampMs())
	}
	return resp, nil
}

// writeTimeout bounds a write that is completed even when its caller gives
// up, so that memory and storage agree on its outcome.
const writeTimeout = 30 * time.Second

// appendMarker writes a marker record to a bucket and returns its offset.
// It is completed even when ctx is cancelled, for the same reason.
func (sh *shard) appendMarker(ctx context.Context, b *bucket, m *schedulerv1.TimerMarker) (int64, error) {
	payload, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	resp, err := sh.e.storage.Append(ctx, &storagev1.AppendRequest{Log: b.log, Records: []*storagev1.Record{{TimestampMs: sh.nowMs(), Payload: payload}}, WriterEpoch: sh.epoch})
	return resp.GetFirstOffset(), err
}

// claim validates that a schedule id names a pending message of queueID
// and settles it as cancelled in memory, so that it is not released while
// the cancellation is written; the caller writes the marker or unsettles.
func (sh *shard) claim(ctx context.Context, queueID, text string) (*bucket, int64, error) {
	id, err := parseScheduleID(text)
	if err != nil {
		return nil, 0, err
	}
	if id.queueID != queueID {
		return nil, 0, errs.Wrapf(errs.ErrScheduleNotFound, "schedule id %s is not one of this queue", text)
	}
	b, err := sh.replayedBucket(ctx, queueID, id.hour)
	if err != nil {
		return nil, 0, err
	}
	if b == nil {
		return nil, 0, errs.Wrapf(errs.ErrScheduleNotFound, "no pending scheduled message has id %s: it was released or cancelled", text)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch {
	case b.queue.gone || b.deleting != nil || !b.entries.get(id.offset):
		return nil, 0, errs.Wrapf(errs.ErrScheduleNotFound, "no pending scheduled message has id %s", text)
	case b.cancelled.get(id.offset):
		return nil, 0, errs.Wrapf(errs.ErrScheduleNotFound, "the scheduled message %s was cancelled or rescheduled", text)
	case b.done.get(id.offset):
		return nil, 0, errs.Wrapf(errs.ErrScheduleReleased, "the scheduled message %s was already released to the queue", text)
	}
	b.settle(id.offset, true)
	b.uncache(id.offset)
	b.busy++
	return b, id.offset, nil
}

// unclaim gives a claimed message back after its marker failed.
func (sh *shard) unclaim(b *bucket, offset, due int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b.unsettle(offset, due)
	b.busy--
}

// cancel cancels scheduled messages, one marker per bucket.
func (sh *shard) cancel(ctx context.Context, queueID string, ids []string) ([]*dmsv1.CancelResult, error) {
	results := make([]*dmsv1.CancelResult, len(ids))
	type claimed struct {
		result int
		offset int64
	}
	var order []*bucket
	byBucket := map[*bucket][]claimed{}
	for i, text := range ids {
		results[i] = &dmsv1.CancelResult{ScheduleId: text}
		b, offset, err := sh.claim(ctx, queueID, text)
		if err != nil && ctx.Err() != nil {
			// Give back what was claimed: nothing of the call is done.
			for b, items := range byBucket {
				for _, c := range items {
					sh.unclaim(b, c.offset, 0)
				}
			}
			return nil, err
		}
		if err != nil {
			setFailure(results[i], err)
			continue
		}
		if _, seen := byBucket[b]; !seen {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], claimed{i, offset})
	}
	for _, b := range order {
		items := byBucket[b]
		m := &schedulerv1.TimerMarker{}
		for _, c := range items {
			m.CancelledOffsets = append(m.CancelledOffsets, c.offset)
		}
		_, err := sh.appendMarker(ctx, b, m)
		for _, c := range items {
			if err != nil {
				sh.unclaim(b, c.offset, 0)
				setFailure(results[c.result], err)
				continue
			}
			sh.release(b)
			results[c.result].Cancelled = true
		}
	}
	return results, nil
}

func setFailure(r *dmsv1.CancelResult, err error) {
	r.ErrorReason, r.ErrorMessage = errs.Of(err).Reason, err.Error()
}

// reschedule appends the message again at its new time, then cancels the
// old entry. A crash between the two leaves both, so the message may be
// released twice but is never lost.
func (sh *shard) reschedule(ctx context.Context, queueID, text string, dueMs int64) (string, string, error) {
	b, offset, err := sh.claim(ctx, queueID, text)
	if err != nil {
		return "", "", err
	}
	// Once claimed, the move is completed even if the caller gives up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	rec, err := sh.readOne(ctx, b.log, offset)
	if err == nil && rec == nil {
		err = errs.Wrapf(errs.ErrInternal, "scheduler: %s has no record at offset %d", logid.Key(b.log), offset)
	}
	if err != nil {
		sh.unclaim(b, offset, 0)
		return "", "", err
	}
	rec.TimestampMs = dueMs
	// The first record of an idempotent append carries its key; the copy
	// is an append of its own.
	rec.IdempotenceKey, rec.IdempotentCount = "", 0
	h := hourOf(dueMs)
	resp, err := sh.appendEntries(ctx, queueID, h, []*storagev1.Record{rec}, "")
	if err != nil {
		sh.unclaim(b, offset, 0)
		return "", "", err
	}
	if _, err := sh.appendMarker(ctx, b, &schedulerv1.TimerMarker{CancelledOffsets: []int64{offset}}); err != nil {
		// In memory the old entry stays cancelled; only a restart before
		// this is retried would release it as well.
		sh.logger.Error("scheduler: recording the old entry of a rescheduled message; it may be released twice after a restart",
			"log", logid.Key(b.log), "offset", offset, "err", err)
	}
	sh.release(b)
	return scheduleID{queueID: queueID, hour: h, offset: resp.GetFirstOffset()}.String(), rec.GetMessageId(), nil
}

// readOne reads the record at offset of a log, or nil when there is none.
func (sh *shard) readOne(ctx context.Context, log logid.ID, offset int64) (*storagev1.Record, error) {
	resp, err := sh.e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 1})
	if err != nil {
		return nil, fmt.Errorf("scheduler: reading %s: %w", log, err)
	}
	if recs := resp.GetRecords(); len(recs) > 0 && recs[0].GetOffset() == offset {
		return recs[0].GetRecord(), nil
	}
	return nil, nil
}
