package dms

import (
	"context"
	"strings"
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
	// ConsumerID names the consumer instance: optional, for diagnostics,
	// except for a broadcast receive, where it is required (1 to 64
	// characters of [A-Za-z0-9_-]) and names the consumer whose position
	// the server keeps.
	ConsumerID string
	// TagFilter, when set, receives only messages whose tags match it. A
	// consumer group keeps one filter: the first receive that gives one
	// sets it for good, later receives may repeat it or give none, and a
	// different one fails with ReasonTagFilterConflict. Messages that do
	// not match are skipped for the group without being delivered.
	TagFilter *TagFilter
	// Broadcast, when set, makes this a broadcast receive: the consumer
	// named by ConsumerID gets every message of the queue by itself
	// instead of sharing them with the group's other consumers.
	Broadcast *Broadcast
}

// TagFilter selects messages by their tags (see Message.Tags).
type TagFilter struct {
	// Tags are 1 to 3 tags, each 1 to 64 characters of [A-Za-z0-9_-].
	Tags []string
	// MatchAll matches a message that has every one of the tags; without
	// it a message matches that has at least one of them.
	MatchAll bool
}

func (f *TagFilter) toProto() *dmsv1.TagFilter {
	if f == nil {
		return nil
	}
	match := dmsv1.TagMatch_TAG_MATCH_ANY
	if f.MatchAll {
		match = dmsv1.TagMatch_TAG_MATCH_ALL
	}
	return &dmsv1.TagFilter{Tags: f.Tags, Match: match}
}

func tagFilterFromProto(f *dmsv1.TagFilter) *TagFilter {
	if len(f.GetTags()) == 0 {
		return nil
	}
	return &TagFilter{Tags: f.GetTags(), MatchAll: f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ALL}
}

// BroadcastStart says where a broadcast consumer that the server does not
// know yet starts. A known consumer always continues where it left off.
type BroadcastStart int32

// The broadcast starts.
const (
	// BroadcastStartCommitted continues from the position the server kept
	// for the consumer id; a new consumer starts at the earliest retained
	// message. The zero BroadcastStart means the same.
	BroadcastStartCommitted BroadcastStart = BroadcastStart(dmsv1.BroadcastStart_BROADCAST_START_COMMITTED)
	// BroadcastStartEarliest starts a new consumer at the earliest retained
	// message.
	BroadcastStartEarliest BroadcastStart = BroadcastStart(dmsv1.BroadcastStart_BROADCAST_START_EARLIEST)
	// BroadcastStartLatest starts a new consumer after the last message
	// stored so far: it gets only messages sent from then on.
	BroadcastStartLatest BroadcastStart = BroadcastStart(dmsv1.BroadcastStart_BROADCAST_START_LATEST)
)

func (s BroadcastStart) String() string {
	switch s {
	case 0, BroadcastStartCommitted:
		return "committed"
	case BroadcastStartEarliest:
		return "earliest"
	case BroadcastStartLatest:
		return "latest"
	}
	return dmsv1.BroadcastStart(s).String()
}

// Broadcast makes a receive a broadcast receive: every consumer id of the
// group gets every message, with its own position kept by the server.
type Broadcast struct {
	// Start is where a consumer the server does not know yet starts.
	Start BroadcastStart
	// AutoAck acks every message as it is delivered: the messages carry no
	// receipt handle, need no Ack, and are not delivered to this consumer
	// again (unless the server crashes mid-receive). Without it each
	// delivery is settled with Ack as usual.
	AutoAck bool
}

func (b *Broadcast) toProto() *dmsv1.BroadcastOptions {
	if b == nil {
		return nil
	}
	return &dmsv1.BroadcastOptions{Start: dmsv1.BroadcastStart(b.Start), AutoAck: b.AutoAck}
}

// Receive returns messages of a consumer group, waiting up to
// opts.WaitTime for the first. Each message must be settled with Ack before
// its visibility timeout passes, or the group gets it again (a broadcast
// receive with AutoAck needs no Ack). No message and no error means none
// became available in time.
//
// If the call fails after the server picked the messages (a lost response,
// ctx canceled while the answer is on its way), those messages stay invisible
// until their visibility timeout passes; delivery is at least once.
func (p *Project) Receive(ctx context.Context, queue, group string, opts ReceiveOptions) ([]*ReceivedMessage, error) {
	req := &dmsv1.ReceiveMessagesRequest{
		Group:       p.groupResource(queue, group),
		MaxMessages: int32(opts.MaxMessages),
		ConsumerId:  opts.ConsumerID,
		TagFilter:   opts.TagFilter.toProto(),
		Broadcast:   opts.Broadcast.toProto(),
	}
	if opts.WaitTime != 0 {
		req.WaitTime = durationpb.New(opts.WaitTime)
	}
	if opts.VisibilityTimeout != 0 {
		req.VisibilityTimeout = durationpb.New(opts.VisibilityTimeout)
	}
	// The server starts the visibility timeout once it has the messages,
	// which is after this moment, so the estimate errs on the safe side.
	start := time.Now()
	resp, err := p.client.cons.ReceiveMessages(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	var visibleAt time.Time
	if opts.Broadcast == nil || !opts.Broadcast.AutoAck {
		visibleAt = start.Add(visibilityOf(opts.VisibilityTimeout))
	}
	return receivedList(resp.GetMessages(), visibleAt), nil
}

func visibilityOf(d time.Duration) time.Duration {
	if d == 0 {
		return defaultVisibilityTimeout
	}
	return d
}

func receivedList(msgs []*dmsv1.ReceivedMessage, visibleAt time.Time) []*ReceivedMessage {
	out := make([]*ReceivedMessage, len(msgs))
	for i, m := range msgs {
		out[i] = receivedFromProto(m, visibleAt)
	}
	return out
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
	// AckRedeliver: the message was not processed and should be tried again
	// later. It becomes available to the group again no sooner than the
	// server's retry delay, and the attempt counts as failed. The delay
	// grows with the message's failed attempts along a schedule set on the
	// server (dmsd -delivery.retry-delays; 30 s, 1 min, 2 min, 5 min,
	// 10 min by default, the last repeating, none below 30 s), and it
	// survives a restart of the server. Dead letters cannot be redelivered.
	AckRedeliver AckStatus = AckStatus(dmsv1.AckStatus_ACK_STATUS_REDELIVER)
)

func (s AckStatus) String() string {
	switch s {
	case AckSuccess:
		return "success"
	case AckFail:
		return "fail"
	case AckRedeliver:
		return "redeliver"
	}
	return dmsv1.AckStatus(s).String()
}

// Ack settles one delivery. ReceivedMessage.Success, ReceivedMessage.Fail
// and ReceivedMessage.Redeliver build them.
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
	// Reason says why not, when not applied: ReasonReceiptHandleInvalid
	// for a handle that is forged, damaged or not a handle at all,
	// ReasonReceiptHandleMismatch for one issued to another queue or group,
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
	return ackInChunks(ctx, acks, func(chunk []*dmsv1.Ack) ([]*dmsv1.AckResult, error) {
		resp, err := p.client.cons.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: name, Acks: chunk})
		return resp.GetResults(), err
	})
}

// ChangeVisibility gives in-flight deliveries a new visibility timeout
// counted from now (15 s to 5 min): a consumer whose work runs long keeps the
// message from being delivered again. The receipt handles stay valid. One
// result per handle; a delivery that expired already is not applied
// (ReasonReceiptHandleExpired). Only messages, not dead letters.
func (p *Project) ChangeVisibility(ctx context.Context, queue, group string, visibility time.Duration, handles ...string) ([]AckResult, error) {
	out := make([]AckResult, 0, len(handles))
	for len(handles) > 0 {
		n := min(len(handles), MaxAcks)
		resp, err := p.client.cons.ChangeVisibility(ctx, &dmsv1.ChangeVisibilityRequest{
			Group: p.groupResource(queue, group), ReceiptHandles: handles[:n], VisibilityTimeout: durationpb.New(visibility),
		})
		if err != nil {
			return out, fromRPC(ctx, err)
		}
		for _, r := range resp.GetResults() {
			out = append(out, ackResultFromProto(r))
		}
		handles = handles[n:]
	}
	return out, nil
}

// ackInChunks sends acks in calls of at most MaxAcks.
func ackInChunks(ctx context.Context, acks []Ack, call func([]*dmsv1.Ack) ([]*dmsv1.AckResult, error)) ([]AckResult, error) {
	out := make([]AckResult, 0, len(acks))
	for len(acks) > 0 {
		n := min(len(acks), MaxAcks)
		results, err := call(acksToProto(acks[:n]))
		if err != nil {
			return out, fromRPC(ctx, err)
		}
		for _, r := range results {
			out = append(out, ackResultFromProto(r))
		}
		acks = acks[n:]
	}
	return out, nil
}

func acksToProto(acks []Ack) []*dmsv1.Ack {
	out := make([]*dmsv1.Ack, len(acks))
	for i, a := range acks {
		out[i] = &dmsv1.Ack{ReceiptHandle: a.ReceiptHandle, Status: dmsv1.AckStatus(a.Status)}
	}
	return out
}

func ackResultFromProto(r *dmsv1.AckResult) AckResult {
	reason := Reason(r.GetErrorReason())
	// The enum is authoritative; servers from before it had only the name.
	if r.GetReason() != dmsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		reason = Reason(strings.TrimPrefix(r.GetReason().String(), "ERROR_REASON_"))
	}
	return AckResult{Applied: r.GetApplied(), Reason: reason, Message: r.GetErrorMessage()}
}
