package delivery

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
)

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
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			from = lost.GetLastOffset() + 1 // nothing there can be redriven
			continue
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

// listScanBytes bounds what one ListDeadLetters reads of the dead-letter
// queue, so that a filter matching nothing answers in bounded time.
const listScanBytes = 8 << 20

// DeadLetterList is one page of ListDeadLetters.
type DeadLetterList struct {
	Messages []*dmsv1.ReceivedMessage
	// Next is where the next page starts; -1 when the queue was scanned to
	// its end.
	Next int64
}

// ListDeadLetters returns dead letters that are still in the dead-letter
// queue (not acknowledged, not redriven), from offset from on, without
// receiving them.
func (e *Engine) ListDeadLetters(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, f message.Filter, reason string, from int64, limit int) (DeadLetterList, error) {
	if !q.GetDeadLetterEnabled() {
		return DeadLetterList{}, errs.Wrapf(errs.ErrDeadLettersDisabled, "queue %q does not keep dead letters (redrive policy disabled)", q.GetDisplayName())
	}
	dl, err := e.consumption(ctx, kindDeadLetters, q, g, "", startEarliest)
	if err != nil {
		return DeadLetterList{}, err
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	p := dl.parts[0]
	from = max(from, p.ackFloor)
	out := DeadLetterList{Next: from}
	for read := 0; read < listScanBytes; {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: p.log, Offset: out.Next, MaxBytes: readBytes})
		if err != nil {
			return out, err
		}
		out.Next = max(out.Next, resp.GetStartOffset())
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			out.Next = lost.GetLastOffset() + 1
			continue
		}
		if len(resp.GetRecords()) == 0 {
			out.Next = -1
			return out, nil
		}
		for _, r := range resp.GetRecords() {
			rec := r.GetRecord()
			read += proto.Size(rec)
			out.Next = r.GetOffset() + 1
			dead := rec.GetDeadLetter()
			deadAt := dead.GetDeadLetterTime().AsTime().UnixMilli()
			if dead.GetDeadLetterTime() == nil {
				deadAt = rec.GetTimestampMs()
			}
			if p.settled(r.GetOffset()) || !f.Matches(rec.GetMessageId(), deadAt, rec.GetMessage()) ||
				(reason != "" && dead.GetLastFailureReason() != reason) {
				continue
			}
			out.Messages = append(out.Messages, &dmsv1.ReceivedMessage{
				MessageId: rec.GetMessageId(), Message: rec.GetMessage(), Partition: 0, Offset: r.GetOffset(),
				PublishTime: timestamppb.New(time.UnixMilli(rec.GetTimestampMs())), DeadLetter: dead,
			})
			if len(out.Messages) >= limit {
				return out, nil
			}
		}
		if out.Next >= resp.GetNextOffset() {
			out.Next = -1
			return out, nil
		}
	}
	return out, nil
}
