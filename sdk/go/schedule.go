package dms

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// CancelResult is the outcome of cancelling one scheduled message.
type CancelResult struct {
	// ScheduleID is the schedule id, as given.
	ScheduleID string
	// Cancelled says whether the message was cancelled: it will never be
	// delivered.
	Cancelled bool
	// Reason says why not, when not cancelled: typically
	// ReasonScheduleAlreadyReleased or ReasonScheduleNotFound.
	Reason Reason
	// Message says why not, for people.
	Message string
}

// CancelScheduledMessages cancels scheduled messages of a queue (sent with a
// Delay or DeliverTime) before they are released, by the schedule ids of
// their SendResult or RescheduleResult: a cancelled message is never
// delivered. It returns one result per id, in order; a message that was
// released already cannot be cancelled. More than 1000 ids are sent in
// several calls.
func (p *Project) CancelScheduledMessages(ctx context.Context, queue string, scheduleIDs ...string) ([]CancelResult, error) {
	name := p.queueResource(queue)
	out := make([]CancelResult, 0, len(scheduleIDs))
	for len(scheduleIDs) > 0 {
		n := min(len(scheduleIDs), MaxAcks)
		resp, err := p.client.prod.CancelScheduledMessages(ctx, &dmsv1.CancelScheduledMessagesRequest{Queue: name, ScheduleIds: scheduleIDs[:n]})
		if err != nil {
			return out, fromRPC(ctx, err)
		}
		for _, r := range resp.GetResults() {
			out = append(out, CancelResult{ScheduleID: r.GetScheduleId(), Cancelled: r.GetCancelled(), Reason: Reason(r.GetErrorReason()), Message: r.GetErrorMessage()})
		}
		scheduleIDs = scheduleIDs[n:]
	}
	return out, nil
}

// RescheduleOptions say when a rescheduled message becomes visible: after
// Delay from now (0 to 7 days), or at DeliverTime (at most 7 days ahead; a
// time in the past releases it at once). Set at most one; the zero value
// releases the message at once.
type RescheduleOptions struct {
	Delay       time.Duration
	DeliverTime time.Time
}

// RescheduleResult is a rescheduled message.
type RescheduleResult struct {
	// ScheduleID is the message's new schedule id; the old one is no
	// longer valid.
	ScheduleID string
	// MessageID is the message id, unchanged.
	MessageID string
	// DeliverTime is when the message now becomes visible to consumers.
	DeliverTime time.Time
}

// RescheduleMessage moves a scheduled message of a queue to another time,
// earlier or later, before it is released. The message keeps its id and gets
// a new schedule id. It fails with ReasonScheduleAlreadyReleased once the
// message was released, and with ReasonScheduleNotFound for a schedule id
// that was cancelled or replaced by an earlier reschedule.
func (p *Project) RescheduleMessage(ctx context.Context, queue, scheduleID string, opts RescheduleOptions) (*RescheduleResult, error) {
	req := &dmsv1.RescheduleMessageRequest{Queue: p.queueResource(queue), ScheduleId: scheduleID}
	if !opts.DeliverTime.IsZero() {
		req.DeliverTime = timestamppb.New(opts.DeliverTime)
	}
	if opts.Delay != 0 || opts.DeliverTime.IsZero() {
		req.Delay = durationpb.New(opts.Delay)
	}
	resp, err := p.client.prod.RescheduleMessage(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	out := &RescheduleResult{ScheduleID: resp.GetScheduleId(), MessageID: resp.GetMessageId()}
	if resp.GetDeliverTime() != nil {
		out.DeliverTime = resp.GetDeliverTime().AsTime()
	}
	return out, nil
}
