package dms

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// defaultVisibilityTimeout is the server's visibility timeout when a receive
// names none.
const defaultVisibilityTimeout = 30 * time.Second

// ReceiveOptions are the parameters of one receive. The zero value asks for
// up to 10 messages without waiting.
type ReceiveOptions struct {
	// MaxMessages is the most messages returned: 1 to MaxReceiveMessages;
	// the server's default (10) when zero. The server also limits a
	// response to about 4 MiB of bodies.
	MaxMessages int
	// WaitTime is how long the server waits for a first message when none
	// is available (long polling): 0 to 60 s. With 0 the call answers at
	// once, possibly with no message.
	WaitTime time.Duration
	// VisibilityTimeout is how long the received messages stay invisible to
	// the group unless settled: 15 s to 300 s; the server's default (30 s)
	// when zero.
	VisibilityTimeout time.Duration
	// ConsumerID names the consumer instance, for diagnostics; optional.
	ConsumerID string
}

// Receive returns messages of a consumer group, waiting up to
// opts.WaitTime for the first. Each message must be settled with Ack before
// its visibility timeout passes, or the group gets it again. No message and
// no error means none became available in time.
//
// If the call fails after the server picked the messages (a lost response,
// ctx canceled while the answer is on its way), those messages stay invisible
// until their visibility timeout passes; delivery is at least once.
func (p *Project) Receive(ctx context.Context, queue, group string, opts ReceiveOptions) ([]*ReceivedMessage, error) {
	req := &dmsv1.ReceiveMessagesRequest{
		Group:       p.groupResource(queue, group),
		MaxMessages: int32(opts.MaxMessages),
		ConsumerId:  opts.ConsumerID,
	}
	if opts.WaitTime != 0 {
		req.WaitTime = durationpb.New(opts.WaitTime)
	}
	visibility := defaultVisibilityTimeout
	if opts.VisibilityTimeout != 0 {
		req.VisibilityTimeout = durationpb.New(opts.VisibilityTimeout)
		visibility = opts.VisibilityTimeout
	}
	// The server starts the visibility timeout once it has the messages,
	// which is after this moment, so the estimate errs on the safe side.
	start := time.Now()
	resp, err := p.client.cons.ReceiveMessages(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	visibleAt := start.Add(visibility)
	out := make([]*ReceivedMessage, len(resp.GetMessages()))
	for i, m := range resp.GetMessages() {
		out[i] = receivedFromProto(m, visibleAt)
	}
	return out, nil
}

// AckStatus is how a delivery is settled.
type AckStatus int32

// The ack statuses.
const (
	// AckSuccess: the message was processed; the group never gets it again.
	AckSuccess AckStatus = AckStatus(dmsv1.AckStatus_ACK_STATUS_SUCCESS)
	// AckFail: the message was not processed; it becomes available to the
	// group again at once and the attempt counts as failed (toward the
	// queue's MaxConsumeCount when dead letters are enabled).
	AckFail AckStatus = AckStatus(dmsv1.AckStatus_ACK_STATUS_FAIL)
)

func (s AckStatus) String() string {
	switch s {
	case AckSuccess:
		return "success"
	case AckFail:
		return "fail"
	}
	return dmsv1.AckStatus(s).String()
}

// Ack settles one delivery. ReceivedMessage.Success and
// ReceivedMessage.Fail build them.
type Ack struct {
	// ReceiptHandle is the handle of the delivery.
	ReceiptHandle string
	// Status is the outcome; success when zero.
	Status AckStatus
}

// AckResult is the outcome of one ack.
type AckResult struct {
	// Applied says whether the ack took effect.
	Applied bool
	// Reason says why not, when not applied: for example
	// ReasonReceiptHandleExpired when the visibility timeout had passed, the
	// delivery was settled already or the message was delivered again.
	Reason Reason
	// Message says why not, for people.
	Message string
}

// Ack settles deliveries of a consumer group and returns one result per ack,
// in order. The error is the failure of the call as a whole; an ack that
// could not be applied (for example because its handle expired) is reported
// in its result, not as an error. More than MaxAcks acks are sent in several
// calls.
func (p *Project) Ack(ctx context.Context, queue, group string, acks ...Ack) ([]AckResult, error) {
	name := p.groupResource(queue, group)
	out := make([]AckResult, 0, len(acks))
	for len(acks) > 0 {
		n := min(len(acks), MaxAcks)
		req := &dmsv1.AckMessagesRequest{Group: name, Acks: make([]*dmsv1.Ack, n)}
		for i, a := range acks[:n] {
			req.Acks[i] = &dmsv1.Ack{ReceiptHandle: a.ReceiptHandle, Status: dmsv1.AckStatus(a.Status)}
		}
		resp, err := p.client.cons.AckMessages(ctx, req)
		if err != nil {
			return out, fromRPC(ctx, err)
		}
		for _, r := range resp.GetResults() {
			out = append(out, AckResult{Applied: r.GetApplied(), Reason: Reason(r.GetErrorReason()), Message: r.GetErrorMessage()})
		}
		acks = acks[n:]
	}
	return out, nil
}
