// Package message holds the rules every message of DMS is held to, whoever
// takes it in: the native gRPC and REST APIs (ingest), the DMS v1.0 REST
// surface, the scheduler when it releases messages, tag filters of consumer
// groups, and each protocol front end. One place decides what a message may
// carry and how its size is counted, so that a message one door takes is
// never refused by another.
package message

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// Limits of a message and of a batch.
const (
	// MaxBytes is the largest message a queue takes (Size of it): 512 KiB,
	// the DMS limit.
	MaxBytes = 512 * 1024
	// MaxBatchMessages and MaxBatchBytes bound one send of the native API.
	MaxBatchMessages = 1000
	MaxBatchBytes    = 8 << 20
	// MaxTags is how many tags a message (or a tag filter) has at most.
	MaxTags = 3
	// MaxOrderingKeyBytes bounds the ordering key, and MaxIdempotenceKeyBytes
	// a producer's idempotence key (SQS allows 128 for both).
	MaxOrderingKeyBytes    = 128
	MaxIdempotenceKeyBytes = 128
	// MaxAttributeNameBytes bounds an attribute name.
	MaxAttributeNameBytes = 64
	// MaxDelay is how far ahead a message can be scheduled: 7 days, the DMS
	// limit of delay_time (604 800 000 ms).
	MaxDelay = 7 * 24 * time.Hour
)

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Size is the size counted against MaxBytes: the body, plus each attribute's
// name and value, a value counted by its length for strings and bytes, 8
// bytes for numbers and 1 for booleans. The DMS v1.0 surface limits the sum
// of its messages' sizes with the same count.
func Size(m *dmsv1.Message) int {
	size := len(m.GetBody())
	for name, v := range m.GetAttributes() {
		size += len(name) + attributeValueSize(v)
	}
	return size
}

func attributeValueSize(v *dmsv1.AttributeValue) int {
	switch k := v.GetKind().(type) {
	case *dmsv1.AttributeValue_StringValue:
		return len(k.StringValue)
	case *dmsv1.AttributeValue_BoolValue:
		return 1
	case nil:
		return 0
	default:
		return 8
	}
}

// ValidateBatch checks a batch of the native API against the limits; the
// first offending message is named in the error, and nothing of the batch
// may be stored when it fails.
func ValidateBatch(msgs []*dmsv1.Message) error {
	if len(msgs) == 0 {
		return errs.Wrapf(errs.ErrBatchEmpty, "the batch has no message")
	}
	if len(msgs) > MaxBatchMessages {
		return errs.Wrapf(errs.ErrBatchTooLarge, "a batch has at most %d messages, got %d", MaxBatchMessages, len(msgs))
	}
	total := 0
	for i, m := range msgs {
		size, err := Validate(m)
		if err != nil {
			return errs.Wrapf(errs.Of(err), "message %d: %v", i, err)
		}
		total += size
	}
	if total > MaxBatchBytes {
		return errs.Wrapf(errs.ErrBatchTooLarge, "a batch has at most %d bytes of messages, got %d", MaxBatchBytes, total)
	}
	return nil
}

// Validate checks one message and returns its Size.
func Validate(m *dmsv1.Message) (int, error) {
	if len(m.GetTags()) > MaxTags {
		return 0, errs.Wrapf(errs.ErrTagInvalid, "a message has at most %d tags, got %d", MaxTags, len(m.GetTags()))
	}
	if err := ValidateTags(m.GetTags()); err != nil {
		return 0, err
	}
	if len(m.GetOrderingKey()) > MaxOrderingKeyBytes {
		return 0, errs.Wrapf(errs.ErrRequestInvalid, "an ordering key has at most %d bytes, got %d", MaxOrderingKeyBytes, len(m.GetOrderingKey()))
	}
	for name, v := range m.GetAttributes() {
		if len(name) < 1 || len(name) > MaxAttributeNameBytes {
			return 0, errs.Wrapf(errs.ErrAttributeInvalid, "attribute name %q must be 1 to %d characters", name, MaxAttributeNameBytes)
		}
		if v.GetKind() == nil {
			return 0, errs.Wrapf(errs.ErrAttributeInvalid, "attribute %q has no value", name)
		}
	}
	size := Size(m)
	if size > MaxBytes {
		return 0, errs.Wrapf(errs.ErrMessageTooLarge, "the message size is %d, larger than the size limit %d", size, MaxBytes)
	}
	return size, nil
}

// ValidateTags checks the form of tags (of a message or of a filter).
func ValidateTags(tags []string) error {
	for _, t := range tags {
		if !tagPattern.MatchString(t) {
			return errs.Wrapf(errs.ErrTagInvalid, "tag %q must be 1 to 64 characters of [A-Za-z0-9_-]", t)
		}
	}
	return nil
}

// ValidateIdempotenceKey checks a producer's idempotence key.
func ValidateIdempotenceKey(key string) error {
	if len(key) > MaxIdempotenceKeyBytes {
		return errs.Wrapf(errs.ErrRequestInvalid, "an idempotence key has at most %d bytes, got %d", MaxIdempotenceKeyBytes, len(key))
	}
	return nil
}

// DueTime returns when a message with this delay or deliver time is due,
// in Unix milliseconds rounded up so that it is never released early, or 0
// when it is due at once (no delay, a delay of 0, a time already passed).
func DueTime(delay *durationpb.Duration, deliverTime *timestamppb.Timestamp, now time.Time) (int64, error) {
	var at time.Time
	switch {
	case delay != nil && deliverTime != nil:
		return 0, errs.Wrapf(errs.ErrDelayInvalid, "a message has a delay or a deliver_time, not both")
	case delay != nil:
		if err := delay.CheckValid(); err != nil {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "delay: %v", err)
		}
		d := delay.AsDuration()
		if d < 0 || d > MaxDelay {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "delay must be 0 to %v, got %v", MaxDelay, d)
		}
		if d == 0 {
			return 0, nil
		}
		at = now.Add(d)
	case deliverTime != nil:
		if err := deliverTime.CheckValid(); err != nil {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "deliver_time: %v", err)
		}
		at = deliverTime.AsTime()
		if at.After(now.Add(MaxDelay)) {
			return 0, errs.Wrapf(errs.ErrDelayInvalid, "deliver_time must be at most %v ahead, got %v", MaxDelay, at.Sub(now).Round(time.Millisecond))
		}
		if !at.After(now) {
			return 0, nil
		}
	default:
		return 0, nil
	}
	due := at.UnixMilli()
	if at.After(time.UnixMilli(due)) {
		due++
	}
	return due, nil
}

// IsDelayed reports whether a message asks to wait: a delay above 0 or a
// deliver time (which DueTime may still find already passed).
func IsDelayed(m *dmsv1.Message) bool {
	return (m.GetDelay() != nil && m.GetDelay().AsDuration() > 0) || m.GetDeliverTime() != nil
}

// DelayAllowed refuses delays on queues other than NORMAL and FIFO (the DMS
// rule for Kafka queues; AMQP queues have no delay either).
func DelayAllowed(mode dmsv1.QueueMode) error {
	switch mode {
	case dmsv1.QueueMode_QUEUE_MODE_UNSPECIFIED, dmsv1.QueueMode_QUEUE_MODE_NORMAL, dmsv1.QueueMode_QUEUE_MODE_FIFO:
		return nil
	}
	return errs.Wrapf(errs.ErrDelayNotAllowed, "a %s queue does not take delayed messages (delay or deliver_time); only NORMAL and FIFO queues do",
		strings.TrimPrefix(mode.String(), "QUEUE_MODE_"))
}

// NormalizeTagFilter checks a consumer group's tag filter and returns it in
// canonical form (sorted, distinct tags and an explicit match mode), or nil
// when it selects every message.
func NormalizeTagFilter(f *dmsv1.TagFilter) (*dmsv1.TagFilter, error) {
	if len(f.GetTags()) == 0 {
		return nil, nil
	}
	if len(f.GetTags()) > MaxTags {
		return nil, errs.Wrapf(errs.ErrTagInvalid, "a tag filter has at most %d tags, got %d", MaxTags, len(f.GetTags()))
	}
	if err := ValidateTags(f.GetTags()); err != nil {
		return nil, err
	}
	match := f.GetMatch()
	switch match {
	case dmsv1.TagMatch_TAG_MATCH_UNSPECIFIED:
		match = dmsv1.TagMatch_TAG_MATCH_ANY
	case dmsv1.TagMatch_TAG_MATCH_ANY, dmsv1.TagMatch_TAG_MATCH_ALL:
	default:
		return nil, errs.Wrapf(errs.ErrTagFilterInvalid, "tag filter match %d is not one of TAG_MATCH_ANY (1) and TAG_MATCH_ALL (2)", match)
	}
	tags := slices.Clone(f.GetTags())
	slices.Sort(tags)
	return &dmsv1.TagFilter{Tags: slices.Compact(tags), Match: match}, nil
}

// Matches reports whether a message with tags passes a normalized filter;
// a nil filter passes everything.
func Matches(f *dmsv1.TagFilter, tags []string) bool {
	if f == nil {
		return true
	}
	for _, want := range f.GetTags() {
		has := slices.Contains(tags, want)
		if has && f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ANY {
			return true
		}
		if !has && f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ALL {
			return false
		}
	}
	return f.GetMatch() == dmsv1.TagMatch_TAG_MATCH_ALL
}
