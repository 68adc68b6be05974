package delivery

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
)

// Receive delivers messages of a consumer group; with broadcast set, to one
// broadcast consumer that gets every message by itself.
func (e *Engine) Receive(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts ReceiveOptions, consumerID string, broadcast *dmsv1.BroadcastOptions) ([]*dmsv1.ReceivedMessage, error) {
	kind, start := kindMessages, startEarliest
	if broadcast != nil {
		if err := catalog.ValidateConsumerID(consumerID); err != nil {
			return nil, errs.Wrapf(errs.ErrConsumerIDRequired, "broadcast consumption needs a consumer id: %v", err)
		}
		kind, opts.AutoAck = kindBroadcast, broadcast.GetAutoAck()
		if broadcast.GetStart() == dmsv1.BroadcastStart_BROADCAST_START_LATEST {
			start = startLatest
		}
	} else {
		consumerID = ""
	}
	c, err := e.consumption(ctx, kind, q, g, consumerID, start)
	if err != nil {
		return nil, err
	}
	return e.receive(ctx, c, opts)
}

// Ack settles deliveries of messages (group or broadcast) by handle.
func (e *Engine) Ack(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, acks []AckRequest, stopAtFirstFailure bool) ([]*dmsv1.AckResult, error) {
	return e.ack(ctx, q, g, kindMessages, e.decode(acks), stopAtFirstFailure)
}

// ChangeVisibility gives in-flight deliveries of messages (group or
// broadcast) a new deadline, visibility from now.
func (e *Engine) ChangeVisibility(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, handles []string, visibility time.Duration) ([]*dmsv1.AckResult, error) {
	acks := make([]AckRequest, len(handles))
	for i, h := range handles {
		acks[i] = AckRequest{Handle: h}
	}
	items := e.decode(acks)
	for i := range items {
		items[i].extend = visibility
	}
	return e.ack(ctx, q, g, kindMessages, items, false)
}

func (e *Engine) decode(acks []AckRequest) []ackItem {
	items := make([]ackItem, len(acks))
	for i, a := range acks {
		items[i].receipt, items[i].err = e.signer.decode(a.Handle)
		items[i].status = a.Status
	}
	return items
}

// ReceiveDeadLetters delivers dead letters of a consumer group.
func (e *Engine) ReceiveDeadLetters(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts ReceiveOptions) ([]*dmsv1.ReceivedMessage, error) {
	if !q.GetDeadLetterEnabled() {
		return nil, errs.Wrapf(errs.ErrDeadLettersDisabled, "queue %q does not keep dead letters (redrive policy disabled)", q.GetDisplayName())
	}
	c, err := e.consumption(ctx, kindDeadLetters, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	return e.receive(ctx, c, opts)
}

// AckDeadLetters settles dead letters by handle.
func (e *Engine) AckDeadLetters(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, acks []AckRequest, stopAtFirstFailure bool) ([]*dmsv1.AckResult, error) {
	if !q.GetDeadLetterEnabled() {
		return nil, errs.Wrapf(errs.ErrDeadLettersDisabled, "queue %q does not keep dead letters (redrive policy disabled)", q.GetDisplayName())
	}
	return e.ack(ctx, q, g, kindDeadLetters, e.decode(acks), stopAtFirstFailure)
}

// RedriveOptions choose which dead letters a redrive gives back.
type RedriveOptions struct {
	MessageIDs   []string
	Filter       *dmsv1.TagFilter
	MaxPerSecond int
	Limit        int
}

// Redrive gives dead letters back to their group: each chosen one leaves the
// dead-letter queue and its original message, still retained in the queue,
// becomes available to the group again with a fresh delivery count. Work
// proceeds in rounds of at most MaxPerSecond dead letters a second, with the
// locks released between rounds so consumers are not held up.
func (e *Engine) Redrive(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts RedriveOptions) ([]*dmsv1.RedriveResult, error) {
	if !q.GetDeadLetterEnabled() {
		return nil, errs.Wrapf(errs.ErrDeadLettersDisabled, "queue %q does not keep dead letters (redrive policy disabled)", q.GetDisplayName())
	}
	filter, err := message.NormalizeTagFilter(opts.Filter)
	if err != nil {
		return nil, err
	}
	perSecond, limit := cmpOr(opts.MaxPerSecond, 1000), cmpOr(opts.Limit, 1000)
	dl, err := e.consumption(ctx, kindDeadLetters, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	msgs, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	var results []*dmsv1.RedriveResult
	from := int64(-1)
	for len(results) < limit {
		roundStart := time.Now()
		round, next, err := e.redriveRound(ctx, dl, msgs, opts.MessageIDs, filter, from, min(perSecond, limit-len(results)))
		if err != nil {
			return results, err
		}
		results = append(results, round...)
		if next < 0 || len(round) == 0 {
			break
		}
		from = next
		select {
		case <-ctx.Done():
			return results, ctx.Err()
		case <-time.After(time.Second - time.Since(roundStart)):
		}
	}
	return results, nil
}

// redriveRound redrives up to n dead letters from offset from on; it
// returns where the next round starts, or -1 when the queue was scanned.
func (e *Engine) redriveRound(ctx context.Context, dl, msgs *consumption, ids []string, filter *dmsv1.TagFilter, from int64, n int) ([]*dmsv1.RedriveResult, int64, error) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	msgs.mu.Lock()
	defer msgs.mu.Unlock()
	p := dl.parts[0]
	if from < p.ackFloor {
		from = p.ackFloor
	}
	logInfo, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: msgs.logs})
	if err != nil {
		return nil, 0, err
	}
	var (
		results          []*dmsv1.RedriveResult
		dlBatch, msBatch stateBatch
	)
	for len(results) < n {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: p.log, Offset: from, MaxBytes: readBytes})
		if err != nil {
			return nil, 0, err
		}
		if len(resp.GetRecords()) == 0 {
			from = -1
			break
		}
		for _, r := range resp.GetRecords() {
			from = r.GetOffset() + 1
			if p.settled(r.GetOffset()) || p.busy(r.GetOffset()) || (len(ids) > 0 && !slices.Contains(ids, r.GetRecord().GetMessageId())) ||
				!message.Matches(filter, r.GetRecord().GetMessage().GetTags()) {
				continue
			}
			dead := r.GetRecord().GetDeadLetter()
			src := dead.GetSourcePartition()
			result := &dmsv1.RedriveResult{MessageId: r.GetRecord().GetMessageId()}
			switch {
			case int(src) >= len(msgs.parts):
				result.ErrorReason, result.ErrorMessage = errs.ErrMessageExpired.Reason, "the source partition no longer exists"
			case dead.GetSourceOffset() < logInfo.GetLogs()[src].GetStartOffset():
				result.ErrorReason, result.ErrorMessage = errs.ErrMessageExpired.Reason, "the original message is past the queue's retention"
			default:
				msgs.parts[src].redrive(dead.GetSourceOffset())
				rec := msBatch.rec(src)
				rec.RedrivenOffsets = append(rec.RedrivenOffsets, dead.GetSourceOffset())
				msBatch.woke = true
				p.settle(r.GetOffset())
				dlBatch.rec(0).AckedOffsets = append(dlBatch.rec(0).AckedOffsets, r.GetOffset())
				result.Redriven = true
			}
			results = append(results, result)
			if len(results) >= n {
				break
			}
		}
	}
	// The message comes back first, then the dead letter goes: a crash in
	// between redrives it twice rather than losing it.
	if err := e.flush(ctx, msgs, &msBatch); err != nil {
		return nil, 0, err
	}
	if err := e.flush(ctx, dl, &dlBatch); err != nil {
		return nil, 0, err
	}
	return results, from, nil
}

func cmpOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// SeekTarget is where SeekConsumerGroup moves a group.
type SeekTarget struct {
	Time     *time.Time
	Offsets  map[int32]int64
	Position dmsv1.SeekPosition
}

// Seek moves a consumer group's position in every partition (or those given
// offsets): everything from there on is undelivered again.
func (e *Engine) Seek(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, target SeekTarget) ([]*dmsv1.PartitionOffset, error) {
	c, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	for p := range target.Offsets {
		if p < 0 || int(p) >= len(c.logs) {
			return nil, errs.Wrapf(errs.ErrSeekTargetInvalid, "queue %q has no partition %d", q.GetDisplayName(), p)
		}
	}
	if target.Time == nil && target.Offsets == nil &&
		target.Position != dmsv1.SeekPosition_SEEK_POSITION_EARLIEST && target.Position != dmsv1.SeekPosition_SEEK_POSITION_LATEST {
		return nil, errs.Wrapf(errs.ErrSeekTargetInvalid, "a seek needs a time, offsets, or the earliest or latest position")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
	if err != nil {
		return nil, err
	}
	var batch stateBatch
	var out []*dmsv1.PartitionOffset
	for i, p := range c.parts {
		pi := int32(i)
		start, next := info.GetLogs()[i].GetStartOffset(), info.GetLogs()[i].GetNextOffset()
		var offset int64
		switch {
		case target.Time != nil:
			resp, err := e.storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: p.log, TimestampMs: target.Time.UnixMilli()})
			if err != nil {
				return nil, err
			}
			offset = resp.GetOffset()
		case target.Offsets != nil:
			o, ok := target.Offsets[pi]
			if !ok {
				out = append(out, &dmsv1.PartitionOffset{Partition: pi, Offset: p.ackFloor})
				continue
			}
			offset = o
		case target.Position == dmsv1.SeekPosition_SEEK_POSITION_EARLIEST:
			offset = start
		default:
			offset = next
		}
		offset = max(start, min(offset, next))
		p.reset(offset)
		batch.rec(pi).SeekOffset = proto.Int64(offset)
		out = append(out, &dmsv1.PartitionOffset{Partition: pi, Offset: offset})
	}
	batch.woke = true
	if err := e.flush(ctx, c, &batch); err != nil {
		return nil, err
	}
	e.logger.Info("consumer group seeked", "queue", q.GetId(), "group", g.GetId(), "positions", len(out))
	return out, nil
}

// Stats returns the consumption counts of a group and its tag filter.
func (e *Engine) Stats(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) (*dmsv1.ConsumerGroupStats, *dmsv1.TagFilter, error) {
	c, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, nil, err
	}
	stats := &dmsv1.ConsumerGroupStats{}
	oldest, err := e.count(ctx, c, stats)
	if err != nil {
		return nil, nil, err
	}
	if oldest > 0 {
		stats.OldestUnackedAge = durationpb.New(max(0, e.now().Sub(time.UnixMilli(oldest))))
	}
	if q.GetDeadLetterEnabled() {
		dl, err := e.consumption(ctx, kindDeadLetters, q, g, "", startEarliest)
		if err != nil {
			return nil, nil, err
		}
		dlStats := &dmsv1.ConsumerGroupStats{}
		if _, err := e.count(ctx, dl, dlStats); err != nil {
			return nil, nil, err
		}
		stats.ProducedDeadLetters, stats.AvailableDeadLetters = dlStats.GetProducedMessages(), dlStats.GetAvailableMessages()
	}
	c.mu.Lock()
	filter := c.filter
	c.mu.Unlock()
	return stats, filter, nil
}

// count adds a consumption's counts to stats and returns the publish time of
// its oldest unacked message (0 when none).
func (e *Engine) count(ctx context.Context, c *consumption, stats *dmsv1.ConsumerGroupStats) (int64, error) {
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch stateBatch
	if err := e.expire(ctx, c, e.now(), &batch); err != nil {
		return 0, err
	}
	if err := e.flush(ctx, c, &batch); err != nil {
		return 0, err
	}
	var oldest int64
	for i, li := range info.GetLogs() {
		p := c.parts[i]
		start, next := li.GetStartOffset(), li.GetNextOffset()
		consumed := max(0, min(p.ackFloor, next)-start) - int64(len(p.redriven)) + p.acked.countIn(start, next)
		stats.ProducedMessages += next - start
		stats.ConsumedMessages += consumed
		stats.InFlightMessages += int64(len(p.inflight))
		if p.ackFloor < next {
			if r, err := e.readOne(ctx, p.log, max(p.ackFloor, start)); err == nil && r != nil {
				if ts := r.GetRecord().GetTimestampMs(); oldest == 0 || ts < oldest {
					oldest = ts
				}
			}
		}
	}
	stats.AvailableMessages = stats.ProducedMessages - stats.ConsumedMessages
	return oldest, nil
}
