package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// kafkaCodes maps the stable reasons of DMS errors (from this process or
// from another role over gRPC) to Kafka error codes. Retriable Kafka codes
// are chosen wherever a retry can succeed: a client retries those by
// itself, refreshing its metadata first for the leadership ones.
var kafkaCodes = map[string]*kerr.Error{
	// The leader moved, or the partition has none right now (a failover):
	// the client looks the leader up again and retries. An idempotent
	// producer's retry of a batch that was stored after all is answered
	// with its offset, not stored twice.
	errs.ErrNotLeader.Reason:   kerr.NotLeaderForPartition,
	errs.ErrFenced.Reason:      kerr.NotLeaderForPartition,
	errs.ErrUnavailable.Reason: kerr.NotLeaderForPartition,

	errs.ErrNotEnoughReplicas.Reason:  kerr.NotEnoughReplicas,
	errs.ErrOutOfOrderSequence.Reason: kerr.OutOfOrderSequenceNumber,
	// A batch of an epoch older than the producer's newest: Kafka answers
	// INVALID_PRODUCER_EPOCH to an idempotent (non-transactional) producer.
	errs.ErrProducerFenced.Reason:  kerr.InvalidProducerEpoch,
	errs.ErrBatchTooLarge.Reason:   kerr.MessageTooLarge,
	errs.ErrMessageTooLarge.Reason: kerr.MessageTooLarge,
	errs.ErrStorageFull.Reason:     kerr.KafkaStorageError,
	errs.ErrRequestInvalid.Reason:  kerr.InvalidRequest,

	errs.ErrQueueNotFound.Reason:          kerr.UnknownTopicOrPartition,
	errs.ErrQueueAlreadyExists.Reason:     kerr.TopicAlreadyExists,
	errs.ErrQueueQuotaExceeded.Reason:     kerr.PolicyViolation,
	errs.ErrQueueNameInvalid.Reason:       kerr.InvalidTopicException,
	errs.ErrQueueNameLengthInvalid.Reason: kerr.InvalidTopicException,
	errs.ErrQueueModeInvalid.Reason:       kerr.InvalidConfig,
	errs.ErrRetentionInvalid.Reason:       kerr.InvalidConfig,
	errs.ErrPartitionCountInvalid.Reason:  kerr.InvalidPartitions,
	errs.ErrReplicationInvalid.Reason:     kerr.InvalidReplicationFactor,
}

// errorCode returns the Kafka error code for an error of a DMS call.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	if code, ok := kafkaCodes[rpcstatus.Reason(rpcstatus.Error(err))]; ok {
		return code.Code
	}
	return kerr.UnknownServerError.Code
}

// errorMessage returns the message that goes with a code in the responses
// that carry one; nil when there is no error.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	msg := err.Error()
	return &msg
}

// reasonError is the Kafka error for a DMS reason a storage answer carries
// in its body rather than as a gRPC status.
func reasonError(reason string) error {
	if code, ok := kafkaCodes[reason]; ok {
		return fmt.Errorf("%w: storage answered %s", code, reason)
	}
	return fmt.Errorf("%w: storage answered %s", kerr.UnknownServerError, reason)
}
