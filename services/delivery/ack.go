package delivery

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// AckRequest settles one delivery.
type AckRequest struct {
	Handle string
	Status dmsv1.AckStatus
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

// ackItem is an ack whose handle was decoded (or, for range acks, built from
// what a session delivered).
type ackItem struct {
	receipt receipt
	status  dmsv1.AckStatus
	err     error         // not to be applied: decoding failed, or the session did not deliver it
	extend  time.Duration // when set, not an ack: the delivery's new visibility
	failure string        // the reason a FAIL records, when not failureByConsumer
	log     string        // the key of the state log of the consumption it belongs to
}

// ack settles items against the consumptions they belong to, in order, and
// makes the results durable before returning.
func (e *Engine) ack(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, want consumptionKind, items []ackItem, stopAtFirstFailure bool) ([]*dmsv1.AckResult, error) {
	// Find and lock every consumption involved, in a fixed order.
	byLog := map[string]*consumption{}
	var owner receipt // the queue and group every handle must name
	if !owner.setOwner(q.GetId(), g.GetId()) {
		return nil, fmt.Errorf("delivery: queue %q or group %q has an id that is not a UUID", q.GetId(), g.GetId())
	}
	var last ackItem // the previous item's state log, reused while kind and consumer repeat
	for i, it := range items {
		if it.err != nil {
			continue
		}
		r := it.receipt
		if r.queue != owner.queue || r.group != owner.group {
			items[i].err = errs.Wrapf(errs.ErrReceiptHandleMismatch, "the receipt handle was issued for another queue or consumer group")
			continue
		}
		if (want == kindDeadLetters) != (r.kind == kindDeadLetters) {
			items[i].err = errs.Wrapf(errs.ErrReceiptHandleKind, "a dead-letter receipt handle settles only dead letters, and a message handle only messages")
			continue
		}
		if last.log != "" && last.receipt.kind == r.kind && last.receipt.consumerID == r.consumerID {
			items[i].log = last.log
		} else {
			items[i].log = logid.Key(stateLogID(r.kind, q.GetId(), g.GetId(), r.consumerID))
		}
		last = items[i]
		if name := items[i].log; byLog[name] == nil {
			loaded, err := e.consumption(ctx, r.kind, q, g, r.consumerID, startEarliest)
			if err != nil {
				return nil, err
			}
			byLog[name] = loaded
		}
	}
	logs := make([]string, 0, len(byLog))
	for log := range byLog {
		logs = append(logs, log)
	}
	slices.Sort(logs)
	for _, log := range logs {
		byLog[log].mu.Lock()
	}
	locked := true
	unlock := func() {
		if locked {
			for _, log := range logs {
				byLog[log].mu.Unlock()
			}
			locked = false
		}
	}
	defer unlock()
	now := e.now()
	batches := map[string]*stateBatch{}
	results := make([]*dmsv1.AckResult, len(items))
	stopped := false
	for i, it := range items {
		if stopped {
			results[i] = notApplied(errs.Wrapf(errs.ErrRequestInvalid, "not applied: an earlier ack in the request failed"))
			continue
		}
		err := it.err
		if err == nil {
			c := byLog[it.log]
			if batches[c.key] == nil {
				batches[c.key] = &stateBatch{}
			}
			err = e.settle(ctx, c, it, now, batches[c.key])
		}
		if err != nil {
			results[i] = notApplied(err)
		} else {
			results[i] = &dmsv1.AckResult{Applied: true}
		}
		if stopAtFirstFailure && (err != nil || !isSuccess(it.status)) {
			stopped = true
		}
	}
	var durable []<-chan error
	for _, log := range logs {
		if b := batches[log]; b != nil {
			durable = append(durable, e.submit(byLog[log], b))
		}
	}
	unlock()
	for _, done := range durable {
		if err := <-done; err != nil {
			return nil, err
		}
	}
	return results, nil
}

func isSuccess(s dmsv1.AckStatus) bool {
	return s == dmsv1.AckStatus_ACK_STATUS_UNSPECIFIED || s == dmsv1.AckStatus_ACK_STATUS_SUCCESS
}

// notApplied is the result of an ack that was refused, with its reason both
// as the enum and as its name.
func notApplied(err error) *dmsv1.AckResult {
	reason := errs.Of(err).Reason
	return &dmsv1.AckResult{
		Applied:      false,
		ErrorReason:  reason,
		ErrorMessage: err.Error(),
		Reason:       dmsv1.ErrorReason(dmsv1.ErrorReason_value["ERROR_REASON_"+reason]),
	}
}

// settle applies one ack to a consumption and adds it to the batch.
func (e *Engine) settle(ctx context.Context, c *consumption, it ackItem, now time.Time, batch *stateBatch) error {
	switch {
	case it.extend > 0:
	case it.status == dmsv1.AckStatus_ACK_STATUS_UNSPECIFIED, it.status == dmsv1.AckStatus_ACK_STATUS_SUCCESS, it.status == dmsv1.AckStatus_ACK_STATUS_FAIL:
	case it.status == dmsv1.AckStatus_ACK_STATUS_REDELIVER:
		if c.kind == kindDeadLetters {
			return errs.Wrapf(errs.ErrAckStatusInvalid, "dead letters are settled with success or fail, not redeliver")
		}
	default:
		return errs.Wrapf(errs.ErrAckStatusInvalid, "ack status %d is not success, fail or redeliver", it.status)
	}
	r := it.receipt
	if int(r.partition) >= len(c.parts) {
		return errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle names a partition the queue does not have")
	}
	p := c.parts[r.partition]
	for _, offset := range p.due(now) {
		if err := e.fail(ctx, c, r.partition, offset, failureTimeout, now, batch); err != nil {
			return err
		}
	}
	if _, inflight := p.inflight[r.offset]; !inflight || p.attempts[r.offset] != r.count {
		return errs.Wrapf(errs.ErrReceiptHandleExpired, "the delivery is no longer current: it was already settled, its visibility timeout passed, or the message was delivered again")
	}
	if it.extend > 0 {
		deadline := now.Add(it.extend)
		p.extend(r.offset, deadline)
		rec := batch.rec(r.partition)
		rec.ExtendedOffsets = append(rec.ExtendedOffsets, r.offset)
		rec.ExtendedVisibleAtMs = deadline.UnixMilli()
		return nil
	}
	switch it.status {
	case dmsv1.AckStatus_ACK_STATUS_FAIL:
		return e.fail(ctx, c, r.partition, r.offset, cmp.Or(it.failure, failureByConsumer), now, batch)
	case dmsv1.AckStatus_ACK_STATUS_REDELIVER:
		return e.fail(ctx, c, r.partition, r.offset, failureRedeliver, now, batch)
	}
	p.settle(r.offset)
	rec := batch.rec(r.partition)
	rec.AckedOffsets = append(rec.AckedOffsets, r.offset)
	// A FIFO partition may be unblocked now: wake its waiting receivers.
	batch.woke = batch.woke || c.fifo()
	return nil
}
