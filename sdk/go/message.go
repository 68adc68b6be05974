package dms

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Limits of the server that this package plans around.
const (
	// MaxBatchMessages is the most messages one send may carry.
	MaxBatchMessages = 1000
	// MaxBatchBytes is the most bytes of messages (see Message.Size) one
	// send may carry.
	MaxBatchBytes = 8 << 20
	// MaxReceiveMessages is the most messages one receive may ask for.
	MaxReceiveMessages = 1000
	// MaxAcks is the most acks one AckMessages call may carry.
	MaxAcks = 1000
)

// Message is a message to send.
type Message struct {
	// Body is the payload: any bytes. Body and attributes together are at
	// most the queue's MaxMessageBytes (512 KiB). The slice is sent as is,
	// not copied: do not modify it until the send completed.
	Body []byte
	// Attributes are named values that travel with the message. A value is
	// a string, a bool, a signed or unsigned integer of at most 32 bits or
	// an int or int64, or a float32 or float64. Received messages carry
	// them as string, bool, int64 or float64.
	Attributes map[string]any
	// Tags are up to 3 tags, each 1 to 64 characters of [A-Za-z0-9_-],
	// that consumer groups can filter on (see TagFilter).
	Tags []string
	// OrderingKey is optional, at most 128 bytes. On a FIFO queue, messages
	// with the same key are delivered in the order they were stored, and
	// none while an earlier message of the key is in flight or waiting for
	// a retry (one receive may deliver several of a key, in order), while
	// different keys proceed in parallel; messages without a key form one
	// sequence of their own. On a normal queue the key picks the partition,
	// so messages with one key keep their order within it. The key does not
	// count toward Size.
	OrderingKey string
	// Delay keeps the message from consumers for this long after the send
	// is accepted: 0 to 7 days, rounded up to milliseconds; zero means at
	// once. The message is durable when the send returns and becomes
	// visible at its time, never before. Set at most one of Delay and
	// DeliverTime (ReasonDelayInvalid otherwise). Only normal and FIFO
	// queues take scheduled messages (ReasonDelayNotAllowed otherwise); on
	// a FIFO queue the message takes its place in the order when it is
	// released. The SendResult of a scheduled message carries the
	// ScheduleID that cancels or reschedules it. Not returned to consumers.
	Delay time.Duration
	// DeliverTime is when the message becomes visible to consumers, at most
	// 7 days ahead; a time in the past means at once. The zero time means
	// no deliver time. Same rules as Delay.
	DeliverTime time.Time
}

// Size is the size the server counts against its message and batch limits:
// the body plus, per attribute, the name, 8 bytes and a string value.
func (m *Message) Size() int {
	size := len(m.Body)
	for name, v := range m.Attributes {
		size += len(name) + 8
		if s, ok := v.(string); ok {
			size += len(s)
		}
	}
	return size
}

func (m *Message) toProto() (*dmsv1.Message, error) {
	pm := &dmsv1.Message{Body: m.Body, Tags: m.Tags, OrderingKey: m.OrderingKey}
	if m.Delay != 0 {
		pm.Delay = durationpb.New(m.Delay)
	}
	if !m.DeliverTime.IsZero() {
		pm.DeliverTime = timestamppb.New(m.DeliverTime)
	}
	if len(m.Attributes) > 0 {
		pm.Attributes = make(map[string]*dmsv1.AttributeValue, len(m.Attributes))
		for name, v := range m.Attributes {
			av, err := attributeToProto(v)
			if err != nil {
				return nil, fmt.Errorf("dms: attribute %q: %w", name, err)
			}
			pm.Attributes[name] = av
		}
	}
	return pm, nil
}

func attributeToProto(v any) (*dmsv1.AttributeValue, error) {
	switch v := v.(type) {
	case string:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_StringValue{StringValue: v}}, nil
	case bool:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: v}}, nil
	case int:
		return intAttribute(int64(v)), nil
	case int8:
		return intAttribute(int64(v)), nil
	case int16:
		return intAttribute(int64(v)), nil
	case int32:
		return intAttribute(int64(v)), nil
	case int64:
		return intAttribute(v), nil
	case uint8:
		return intAttribute(int64(v)), nil
	case uint16:
		return intAttribute(int64(v)), nil
	case uint32:
		return intAttribute(int64(v)), nil
	case float32:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: float64(v)}}, nil
	case float64:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: v}}, nil
	default:
		return nil, fmt.Errorf("values of type %T cannot be sent; use a string, bool, integer or float", v)
	}
}

func intAttribute(v int64) *dmsv1.AttributeValue {
	return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_IntValue{IntValue: v}}
}

func attributesFromProto(attrs map[string]*dmsv1.AttributeValue) map[string]any {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]any, len(attrs))
	for name, v := range attrs {
		switch k := v.GetKind().(type) {
		case *dmsv1.AttributeValue_StringValue:
			out[name] = k.StringValue
		case *dmsv1.AttributeValue_IntValue:
			out[name] = k.IntValue
		case *dmsv1.AttributeValue_DoubleValue:
			out[name] = k.DoubleValue
		case *dmsv1.AttributeValue_BoolValue:
			out[name] = k.BoolValue
		}
	}
	return out
}

// SendResult says where a sent message was stored.
type SendResult struct {
	// MessageID is the id the server assigned; a scheduled message keeps it
	// when it is released.
	MessageID string
	// Partition is the partition that holds the message; 0 for a scheduled
	// message, whose partition is chosen when it is released.
	Partition int
	// Offset is the message's offset within the partition; 0 for a
	// scheduled message.
	Offset int64
	// ScheduleID is set for a scheduled message (one sent with a Delay or
	// DeliverTime): the opaque id that cancels (CancelScheduledMessages)
	// or reschedules (RescheduleMessage) it until it is released.
	ScheduleID string
	// DeliverTime is set for a scheduled message: when it becomes visible
	// to consumers.
	DeliverTime time.Time
}

// ReceivedMessage is one delivery of a message to a consumer group. Settle it
// with Ack, using Success, Fail or Redeliver, before its visibility timeout
// passes, or it is delivered again. A dead letter (from ReceiveDeadLetters)
// is a ReceivedMessage with DeadLetter set, settled with AckDeadLetters.
type ReceivedMessage struct {
	// Message is the message as it was sent.
	Message
	// ID is the message id assigned when it was sent.
	ID string
	// ReceiptHandle is the opaque token that settles this delivery; it is
	// valid only for the group it was issued to and only for this delivery.
	ReceiptHandle string
	// Partition is the partition that holds the message.
	Partition int
	// Offset is the message's offset within the partition.
	Offset int64
	// PublishTime is when the message was stored.
	PublishTime time.Time
	// DeliveryCount is how many times the message has been delivered to
	// the group, this delivery included: 1 the first time.
	DeliveryCount int
	// VisibleAt is when, unless settled, the message becomes available to
	// the group again, as estimated by this client (the receive's start
	// plus the visibility timeout). Zero for a broadcast delivery that was
	// acked automatically.
	VisibleAt time.Time
	// DeadLetter is set on dead letters and tells why the message became
	// one; nil for a regular delivery. Partition and Offset of a dead
	// letter refer to the group's dead-letter queue, DeadLetter's
	// SourcePartition and SourceOffset to the original message.
	DeadLetter *DeadLetterInfo
}

// DeadLetterInfo tells why a message became a dead letter.
type DeadLetterInfo struct {
	// FailureCount is how many times consuming the message failed: the
	// queue's MaxConsumeCount when it moved.
	FailureCount int
	// LastFailureReason is the last failure: one of FailureByConsumer,
	// FailureVisibilityTimeout and FailureRedeliverRequested.
	LastFailureReason string
	// Time is when the message became a dead letter.
	Time time.Time
	// SourcePartition is the partition of the queue that holds the
	// original message.
	SourcePartition int
	// SourceOffset is the original message's offset in that partition.
	SourceOffset int64
}

// The values of DeadLetterInfo.LastFailureReason.
const (
	// FailureByConsumer: the last delivery was acked with AckFail.
	FailureByConsumer = "FAILED_BY_CONSUMER"
	// FailureVisibilityTimeout: the last delivery was not settled within
	// its visibility timeout.
	FailureVisibilityTimeout = "VISIBILITY_TIMEOUT"
	// FailureRedeliverRequested: the last delivery was acked with
	// AckRedeliver.
	FailureRedeliverRequested = "REDELIVER_REQUESTED"
)

// Success returns the ack that settles the delivery as processed.
func (m *ReceivedMessage) Success() Ack {
	return Ack{ReceiptHandle: m.ReceiptHandle, Status: AckSuccess}
}

// Fail returns the ack that settles the delivery as failed: the message
// becomes available to the group again at once.
func (m *ReceivedMessage) Fail() Ack { return Ack{ReceiptHandle: m.ReceiptHandle, Status: AckFail} }

// Redeliver returns the ack that settles the delivery as failed, to be tried
// again later: the message becomes available to the group again only after
// the server's retry delay (see AckRedeliver). Dead letters cannot be
// redelivered.
func (m *ReceivedMessage) Redeliver() Ack {
	return Ack{ReceiptHandle: m.ReceiptHandle, Status: AckRedeliver}
}

func receivedFromProto(rm *dmsv1.ReceivedMessage, visibleAt time.Time) *ReceivedMessage {
	m := rm.GetMessage()
	out := &ReceivedMessage{
		Message: Message{
			Body:        m.GetBody(),
			Attributes:  attributesFromProto(m.GetAttributes()),
			Tags:        m.GetTags(),
			OrderingKey: m.GetOrderingKey(),
		},
		ID:            rm.GetMessageId(),
		ReceiptHandle: rm.GetReceiptHandle(),
		Partition:     int(rm.GetPartition()),
		Offset:        rm.GetOffset(),
		DeliveryCount: int(rm.GetDeliveryCount()),
		VisibleAt:     visibleAt,
	}
	if rm.GetPublishTime() != nil {
		out.PublishTime = rm.GetPublishTime().AsTime()
	}
	if dl := rm.GetDeadLetter(); dl != nil {
		out.DeadLetter = &DeadLetterInfo{
			FailureCount:      int(dl.GetFailureCount()),
			LastFailureReason: dl.GetLastFailureReason(),
			SourcePartition:   int(dl.GetSourcePartition()),
			SourceOffset:      dl.GetSourceOffset(),
		}
		if dl.GetDeadLetterTime() != nil {
			out.DeadLetter.Time = dl.GetDeadLetterTime().AsTime()
		}
	}
	return out
}
