package dms

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// errDeadLetterReceiveOptions is the error of a dead-letter receive given
// options that apply only to messages.
var errDeadLetterReceiveOptions = errors.New("dms: dead-letter receives take no tag filter and no broadcast")

// ReceiveDeadLetters returns dead letters of a consumer group, waiting up to
// opts.WaitTime for the first, each with its DeadLetter info. Of opts,
// MaxMessages, WaitTime and VisibilityTimeout apply; a TagFilter or
// Broadcast is refused. Settle each with AckDeadLetters before its
// visibility timeout passes: Success removes it, Fail makes it available
// again at once. It fails with ReasonDeadLettersDisabled when the queue
// keeps no dead letters.
func (p *Project) ReceiveDeadLetters(ctx context.Context, queue, group string, opts ReceiveOptions) ([]*ReceivedMessage, error) {
	if opts.TagFilter != nil || opts.Broadcast != nil {
		return nil, errDeadLetterReceiveOptions
	}
	req := &dmsv1.ReceiveDeadLettersRequest{Group: p.groupResource(queue, group), MaxMessages: int32(opts.MaxMessages)}
	if opts.WaitTime != 0 {
		req.WaitTime = durationpb.New(opts.WaitTime)
	}
	if opts.VisibilityTimeout != 0 {
		req.VisibilityTimeout = durationpb.New(opts.VisibilityTimeout)
	}
	start := time.Now()
	resp, err := p.client.cons.ReceiveDeadLetters(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return receivedList(resp.GetMessages(), start.Add(visibilityOf(opts.VisibilityTimeout))), nil
}

// AckDeadLetters settles dead letters of a consumer group, as Ack settles
// messages: one result per ack, in order. AckSuccess removes a dead letter
// for good and AckFail makes it available again at once; AckRedeliver is
// not accepted (its result says ReasonAckStatusInvalid). A message's receipt
// handle is refused with ReasonReceiptHandleKindMismatch, as is a dead
// letter's handle given to Ack.
func (p *Project) AckDeadLetters(ctx context.Context, queue, group string, acks ...Ack) ([]AckResult, error) {
	name := p.groupResource(queue, group)
	return ackInChunks(ctx, acks, func(chunk []*dmsv1.Ack) ([]*dmsv1.AckResult, error) {
		resp, err := p.client.cons.AckDeadLetters(ctx, &dmsv1.AckDeadLettersRequest{Group: name, Acks: chunk})
		return resp.GetResults(), err
	})
}

// RedriveOptions choose which dead letters RedriveDeadLetters gives back.
// The zero value redrives up to 1000 of them, all that are not hidden by a
// receive.
type RedriveOptions struct {
	// MessageIDs redrives only the dead letters of these message ids;
	// empty means all.
	MessageIDs []string
	// TagFilter redrives only dead letters whose message matches it.
	TagFilter *TagFilter
	// MaxPerSecond paces the redrive; the server's default (1000) when
	// zero. A redrive of more than that takes more than a second.
	MaxPerSecond int
	// Limit is the most dead letters redriven by this call; the server's
	// default (1000) when zero. Call again for more.
	Limit int
}

// RedriveResult is the outcome for one dead letter.
type RedriveResult struct {
	// MessageID is the id of the message.
	MessageID string
	// Redriven says whether the message is available to the group again.
	Redriven bool
	// Reason says why not, when not redriven: typically
	// ReasonMessageExpired when the original message is past the queue's
	// retention.
	Reason Reason
	// Message says why not, for people.
	Message string
}

// RedriveDeadLetters gives dead letters back to their consumer group: each
// chosen dead letter leaves the dead-letter queue and its message becomes
// available to the group again, with a fresh delivery count and failure
// count. Other groups of the queue are not affected. It returns one result
// per dead letter considered, in dead-letter order. A call that fails part
// way (its context ended, for example) may have redriven some dead letters
// already; calling again redrives the rest.
func (p *Project) RedriveDeadLetters(ctx context.Context, queue, group string, opts RedriveOptions) ([]RedriveResult, error) {
	resp, err := p.client.cons.RedriveDeadLetters(ctx, &dmsv1.RedriveDeadLettersRequest{
		Group:        p.groupResource(queue, group),
		MessageIds:   opts.MessageIDs,
		TagFilter:    opts.TagFilter.toProto(),
		MaxPerSecond: int32(opts.MaxPerSecond),
		Limit:        int32(opts.Limit),
	})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	out := make([]RedriveResult, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = RedriveResult{MessageID: r.GetMessageId(), Redriven: r.GetRedriven(), Reason: Reason(r.GetErrorReason()), Message: r.GetErrorMessage()}
	}
	return out, nil
}
