package kafka

// Produce (key 0): versions 0-12 advertised, 3-12 served (Kafka 4.0's
// range; v12 only changes how transactions are verified, and transactions
// are not served).
//
// Each partition's record batch is appended to the queue partition through
// the routed storage client, which takes it to the partition's leader
// wherever that is, as one Kafka-format batch holding the bytes the
// producer sent: never decompressed into messages, never recompressed.
// Before that the front end checks what Kafka's broker checks: one whole
// batch of magic 2 whose CRC-32C matches (else CORRUPT_MESSAGE), records
// that decode at the batch's count (else CORRUPT_MESSAGE), no larger than
// -kafka.max-message-bytes (else MESSAGE_TOO_LARGE), not a control batch
// (INVALID_RECORD) nor transactional (TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
// transactions are not served). Then the project's quotas (ingest.Quotas,
// the check the native API and AMQP go through): each record's encoded
// length against max_message_bytes (MESSAGE_TOO_LARGE), the stored bytes
// (POLICY_VIOLATION), and the batch's bytes as sent and its record count
// against the send rates. A batch over the rate is delayed, as Kafka
// delays a client over its quota, until the rate admits it (or the
// request's timeout ends: THROTTLING_QUOTA_EXCEEDED, retriable); one that
// takes the rate's last tokens is answered with throttle_time_ms, the
// time until the rate admits again, which clients wait out (KIP-219). A
// refused batch stores nothing.
//
// Durability follows the queue, as for the native API: a KAFKA_HA topic
// is answered once the in-sync replicas have the batch on disk, a KAFKA_HT
// topic once the leader has written it. acks=1 and acks=all are therefore
// the same on one topic (on KAFKA_HA, acks=1 waits for the replicas too);
// acks=0 gets no response, as in Kafka, and a failure closes the
// connection. Idempotent producers are checked
// by storage on the leader (the last five batches of each producer: a
// retry answers with the first write's offset, a gap is
// OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH). A
// leader that moved or stays unreachable is NOT_LEADER_OR_FOLLOWER, which
// clients answer by refreshing their metadata and retrying.
//
// Versions 0-2 carry message sets of magic 0 and 1, which are not taken
// (UNSUPPORTED_FOR_MESSAGE_FORMAT); they are advertised anyway because
// librdkafka before 2.11.1 turns compression on only when the broker's
// Produce versions include 0 (KAFKA-18659). Unknown topics are created
// when -kafka.auto-create-topics is on.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
)

func init() { register(kmsg.Produce.Int16(), 0, 12, (*Server).produce) }

func (s *Server) produce(ctx context.Context, r *request, req *kmsg.ProduceRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var refuse error
	switch {
	case req.Version < 3:
		refuse = fmt.Errorf("%w: Produce v%d carries message sets of magic 0 or 1; send v3 or later (Kafka 0.11+ clients do)", kerr.UnsupportedForMessageFormat, req.Version)
	case req.TransactionID != nil:
		refuse = fmt.Errorf("%w: transactions are not served", kerr.TransactionalIDAuthorizationFailed)
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		refuse = fmt.Errorf("%w: acks %d; use 0, 1 or -1 (all)", kerr.InvalidRequiredAcks, req.Acks)
	}
	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}
	project := s.project(r)
	var wg sync.WaitGroup
	var throttleMu sync.Mutex
	var maxThrottle time.Duration // the longest of the partitions' throttles
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		var topic *metadatav1.QueueRecord
		terr := refuse
		if terr == nil {
			topic, terr = s.topicOrCreate(ctx, project, t.Topic)
		}
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		for i := range t.Partitions {
			p := &t.Partitions[i]
			rp := &rt.Partitions[i]
			*rp = kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = p.Partition, -1, -1, -1
			if terr != nil {
				s.setProduceError(rp, terr)
				continue
			}
			// Partitions are appended at the same time, as a broker's
			// log appends run side by side; one request's partitions are
			// distinct, so no producer's order depends on another's.
			wg.Add(1)
			go func() {
				defer wg.Done()
				base, throttle, err := s.producePartition(ctx, topic, p)
				if err != nil {
					s.setProduceError(rp, err)
					return
				}
				rp.BaseOffset = base
				throttleMu.Lock()
				maxThrottle = max(maxThrottle, throttle)
				throttleMu.Unlock()
			}()
		}
		resp.Topics = append(resp.Topics, rt)
	}
	wg.Wait()
	if req.Acks == 0 {
		// No answer; but a failed write closes the connection, as Kafka
		// does, so that the producer notices (it refreshes its metadata
		// and reconnects) instead of sending into a void.
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					return nil, fmt.Errorf("kafka: an acks=0 produce to %s partition %d failed: %s", rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
				}
			}
		}
		return nil, nil
	}
	// Over its project's send rate: the client waits this long before its
	// next produce (KIP-219; Kafka 2.0+ clients do).
	resp.ThrottleMillis = int32(maxThrottle.Milliseconds())
	return resp, nil
}

func (s *Server) setProduceError(rp *kmsg.ProduceResponseTopicPartition, err error) {
	rp.ErrorCode, rp.ErrorMessage = errorCode(err), errorMessage(err)
	if rp.ErrorCode == kerr.UnknownServerError.Code || rp.ErrorCode == kerr.CorruptMessage.Code {
		s.logger.Warn("kafka: produce refused", "partition", rp.Partition, "err", err)
	}
}

// producePartition checks and stores one partition's batch and returns its
// base offset.
func (s *Server) producePartition(ctx context.Context, q *metadatav1.QueueRecord, p *kmsg.ProduceRequestTopicPartition) (int64, time.Duration, error) {
	if err := partitionError(q, p.Partition); err != nil {
		return -1, 0, err
	}
	if len(p.Records) > s.cfg.MaxMessageBytes {
		return -1, 0, fmt.Errorf("%w: the batch is %d bytes; topic %q takes batches of at most %d (max.message.bytes)", kerr.MessageTooLarge, len(p.Records), q.GetDisplayName(), s.cfg.MaxMessageBytes)
	}
	b, largest, largestAt, err := checkProducedBatch(p.Records)
	if err != nil {
		return -1, 0, err
	}
	throttle, err := s.admit(ctx, q.GetProject(), b.NumRecords, len(p.Records), largest, largestAt)
	if err != nil {
		return -1, 0, err
	}
	first, last := b.FirstTimestamp, max(b.MaxTimestamp, b.FirstTimestamp)
	if first < 0 {
		// A producer that sets no timestamps: storage indexes the time it
		// got the batch (the bytes keep the producer's -1).
		now := time.Now().UnixMilli()
		first, last = now, max(last, now)
	}
	resp, err := s.deps.Storage.Append(ctx, &storagev1.AppendRequest{
		Log: logid.Partition(q.GetId(), p.Partition),
		Batch: &storagev1.RecordBatch{
			Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, RecordCount: b.NumRecords,
			FirstTimestampMs: first, MaxTimestampMs: last, Data: p.Records,
		},
		Durability: durabilityOf(q),
	})
	if err != nil {
		return -1, 0, err
	}
	return resp.GetFirstOffset(), throttle, nil
}

// maxThrottleWait bounds how long a produce over its project's rate waits
// for the rate to admit it when the request sets no timeout.
const maxThrottleWait = 30 * time.Second

// admit checks a batch against the project's quotas (ingest.Quotas, the
// check every front end runs): the bytes the producer sent and its record
// count against the send rates, each record's encoded length against the
// largest message, and the stored bytes. A batch over the rate waits, as
// Kafka's broker delays a client over its quota, until the rate admits it
// or the request's timeout ends (THROTTLING_QUOTA_EXCEEDED, retriable).
// throttle is how long the client should wait before its next produce
// (throttle_time_ms): the time until the project's buckets hold a token.
func (s *Server) admit(ctx context.Context, project string, count int32, bytes, largest, largestAt int) (throttle time.Duration, err error) {
	if s.deps.Quotas == nil {
		return 0, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxThrottleWait)
		defer cancel()
	}
	for {
		throttle, err = s.deps.Quotas.AdmitBatch(ctx, project, int(count), bytes, largest, largestAt)
		switch {
		case err == nil:
			return throttle, nil
		case errors.Is(err, errs.ErrRateLimited) && ctx.Err() == nil:
			continue // held until the bucket would admit it: again
		case errors.Is(err, errs.ErrRateLimited):
			return 0, fmt.Errorf("%w: %s: %v", kerr.ThrottlingQuotaExceeded, errs.Of(err).Reason, err)
		case errors.Is(err, errs.ErrStorageQuotaExceeded):
			return 0, fmt.Errorf("%w: %s: %v", kerr.PolicyViolation, errs.Of(err).Reason, err)
		case errors.Is(err, errs.ErrMessageTooLarge):
			return 0, fmt.Errorf("%w: %s: %v", kerr.MessageTooLarge, errs.Of(err).Reason, err)
		}
		return 0, err
	}
}

// checkProducedBatch checks a partition's records as Kafka's broker does
// and returns the batch header and its largest record's length and index.
func checkProducedBatch(data []byte) (b kmsg.RecordBatch, largest, largestAt int, err error) {
	b, err = recordfmt.ParseKafkaBatch(data)
	if err != nil {
		return b, 0, 0, fmt.Errorf("%w: %v", kerr.CorruptMessage, err)
	}
	switch {
	case b.Attributes&recordfmt.KafkaControl != 0:
		return b, 0, 0, fmt.Errorf("%w: producers may not send control batches", kerr.InvalidRecord)
	case b.Attributes&recordfmt.KafkaTransactional != 0:
		return b, 0, 0, fmt.Errorf("%w: a transactional batch; transactions are not served", kerr.TransactionalIDAuthorizationFailed)
	}
	largest, largestAt, err = recordfmt.CheckKafkaRecordsLargest(&b)
	if err != nil {
		if errors.Is(err, recordfmt.ErrKafkaBatch) {
			return b, 0, 0, fmt.Errorf("%w: %v", kerr.CorruptMessage, err)
		}
		return b, 0, 0, err
	}
	return b, largest, largestAt, nil
}

// durabilityOf is when an append to a topic is answered: KAFKA_HA once
// durable on the in-sync replicas, KAFKA_HT once written on the leader.
func durabilityOf(q *metadatav1.QueueRecord) storagev1.Durability {
	if q.GetMode() == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT {
		return storagev1.Durability_DURABILITY_ASYNC
	}
	return storagev1.Durability_DURABILITY_SYNC
}
