package kafka

// Fetch (key 1): versions 4-17 (Kafka 4.0's range; v17 adds only a field
// of replicas).
//
// Each partition is read on its leader through the routed storage client
// as stored batches (Read with raw_batches), and the batches are returned
// as bytes: Kafka batches as the producer sent them with their base offset
// set, native batches (messages sent through the DMS APIs) encoded as
// Kafka batches (records.go). The first batch may start before the fetch
// offset; clients skip the records before it, as they do with Kafka.
// Consumers see only what is below the high watermark (every in-sync
// replica has it); the last stable offset is the high watermark, since no
// transactions exist. A range storage found damaged and could not repair
// is served as an empty batch spanning it, which consumers step over, as
// they step over batches emptied by compaction.
//
// min_bytes and max_wait make a long poll: when the first pass over the
// partitions finds fewer bytes than min_bytes, the request waits (up to
// max_wait) for any of them to grow and reads again. max_bytes and each
// partition's max bytes bound the answer, except that the first batch is
// returned whole however large (KIP-74). Errors are per partition:
// UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID from v13), leader epoch
// checks (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH), and
// OFFSET_OUT_OF_RANGE for an offset below the log start or above the high
// watermark. (Kafka compares with the leader's log end; DMS shows clients
// nothing above the high watermark, so that is the end they can know.)
//
// Fetch sessions (KIP-227) are not kept: every answer has session id 0,
// which tells clients to send full fetches; an incremental fetch naming a
// session is FETCH_SESSION_ID_NOT_FOUND. Versions 0-3 (message sets of
// magic 0 and 1) are not served.

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
)

func init() { register(kmsg.Fetch.Int16(), 4, 17, (*Server).fetch) }

// fetchPart is one partition of a fetch: where it reads and what it has
// read.
type fetchPart struct {
	q      *metadatav1.QueueRecord
	req    *kmsg.FetchRequestTopicPartition
	resp   *kmsg.FetchResponseTopicPartition
	failed bool  // answered with an error; not read again
	end    int64 // the high watermark seen, where a wait starts
}

func (s *Server) fetch(ctx context.Context, r *request, req *kmsg.FetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.SessionID != 0 {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp, nil
	}
	project := s.project(r)
	var parts []*fetchPart
	for _, t := range req.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		var q *metadatav1.QueueRecord
		var terr error
		if req.Version >= 13 {
			q, terr = s.topicByID(ctx, project, t.TopicID)
		} else {
			q, terr = s.topic(ctx, project, t.Topic)
		}
		rt.Partitions = make([]kmsg.FetchResponseTopicPartition, len(t.Partitions))
		resp.Topics = append(resp.Topics, rt)
		rt = resp.Topics[len(resp.Topics)-1]
		for i := range t.Partitions {
			fp := &fetchPart{q: q, req: &t.Partitions[i], resp: &rt.Partitions[i]}
			*fp.resp = kmsg.NewFetchResponseTopicPartition()
			fp.resp.Partition, fp.resp.HighWatermark, fp.resp.LastStableOffset, fp.resp.LogStartOffset = fp.req.Partition, -1, -1, -1
			fp.end = fp.req.FetchOffset
			err := terr
			if err == nil {
				err = s.checkLeaderEpoch(q, fp.req.Partition, fp.req.CurrentLeaderEpoch)
			}
			if err != nil {
				fp.fail(err)
			}
			parts = append(parts, fp)
		}
	}
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = math.MaxInt32
	}
	deadline := time.Now().Add(time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond)
	for {
		got, failed := s.fetchPass(ctx, parts, maxBytes)
		if got >= int(req.MinBytes) || failed || !time.Now().Before(deadline) {
			break
		}
		if !s.fetchWait(ctx, parts, deadline) {
			break
		}
	}
	for _, fp := range parts {
		// A partition without records gets empty records, never null
		// (length -1), as Kafka's broker answers: kafka-python fails on a
		// null.
		if fp.resp.RecordBatches == nil {
			fp.resp.RecordBatches = []byte{}
		}
	}
	return resp, ctx.Err()
}

func (fp *fetchPart) fail(err error) {
	fp.failed = true
	fp.resp.ErrorCode = errorCode(err)
	fp.resp.RecordBatches = nil
}

// fetchPass reads every partition once, without waiting, and returns the
// bytes gathered and whether a partition failed (an answer is due at once
// then, as in Kafka).
func (s *Server) fetchPass(ctx context.Context, parts []*fetchPart, maxBytes int) (int, bool) {
	total, failed := 0, false
	for _, fp := range parts {
		if fp.failed {
			failed = true
			continue
		}
		fp.resp.RecordBatches = fp.resp.RecordBatches[:0]
		budget := min(int(fp.req.PartitionMaxBytes), maxBytes-total)
		if total > 0 && budget <= 0 {
			// No room left, but the offsets are still due.
			if err := s.fetchPartitionOffsets(ctx, fp); err != nil {
				fp.fail(err)
				failed = true
			}
			continue
		}
		budget = max(budget, 1)
		if err := s.fetchPartition(ctx, fp, budget); err != nil {
			if ctx.Err() != nil {
				return total, true
			}
			fp.fail(err)
			failed = true
			continue
		}
		total += len(fp.resp.RecordBatches)
	}
	return total, failed
}

// fetchPartition reads one partition from its fetch offset.
func (s *Server) fetchPartition(ctx context.Context, fp *fetchPart, budget int) error {
	offset := fp.req.FetchOffset
	rr, err := s.deps.Storage.Read(ctx, &storagev1.ReadRequest{
		Log: logid.Partition(fp.q.GetId(), fp.req.Partition), Offset: offset, MaxBytes: int32(budget), RawBatches: true,
	})
	if err != nil {
		return err
	}
	fp.resp.HighWatermark, fp.resp.LastStableOffset, fp.resp.LogStartOffset = rr.GetNextOffset(), rr.GetNextOffset(), rr.GetStartOffset()
	fp.end = max(offset, rr.GetNextOffset())
	if offset < rr.GetStartOffset() || offset > rr.GetNextOffset() {
		return fmt.Errorf("%w: offset %d of partition %d of %q is outside [%d, %d]", kerr.OffsetOutOfRange,
			offset, fp.req.Partition, fp.q.GetDisplayName(), rr.GetStartOffset(), rr.GetNextOffset())
	}
	out := fp.resp.RecordBatches
	for _, b := range rr.GetBatches() {
		if b.GetBaseOffset()+int64(b.GetRecordCount()) <= offset {
			continue
		}
		if out, err = appendKafkaBatch(out, b); err != nil {
			return fmt.Errorf("kafka: partition %d of %q: %w", fp.req.Partition, fp.q.GetDisplayName(), err)
		}
	}
	if lost := rr.GetLost(); lost != nil && len(rr.GetBatches()) == 0 {
		out = appendLostBatch(out, lost)
	}
	fp.resp.RecordBatches = out
	return nil
}

// fetchPartitionOffsets fills in a partition's offsets without reading records.
func (s *Server) fetchPartitionOffsets(ctx context.Context, fp *fetchPart) error {
	info, err := s.deps.Storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{logid.Partition(fp.q.GetId(), fp.req.Partition)}})
	if err != nil {
		return err
	}
	li := info.GetLogs()[0]
	fp.resp.HighWatermark, fp.resp.LastStableOffset, fp.resp.LogStartOffset = li.GetNextOffset(), li.GetNextOffset(), li.GetStartOffset()
	fp.end = max(fp.req.FetchOffset, li.GetNextOffset())
	return nil
}

// appendLostBatch appends an empty Kafka batch spanning a lost range, for
// consumers to step over it.
func appendLostBatch(dst []byte, lost *storagev1.LostRange) []byte {
	kb := kmsg.RecordBatch{
		FirstOffset: lost.GetFirstOffset(), PartitionLeaderEpoch: -1, Magic: 2,
		LastOffsetDelta: int32(min(lost.GetLastOffset()-lost.GetFirstOffset(), math.MaxInt32)),
		FirstTimestamp:  -1, MaxTimestamp: -1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
	}
	kb.Length = int32(recordfmt.KafkaBatchHeaderSize - 12)
	start := len(dst)
	dst = kb.AppendTo(dst)
	kb.CRC = int32(recordfmt.KafkaBatchCRC(dst[start:]))
	return kb.AppendTo(dst[:start])
}

// fetchWait waits until one of the partitions may have grown past the end
// last seen, or the deadline. It reports false when the request ended.
func (s *Server) fetchWait(ctx context.Context, parts []*fetchPart, deadline time.Time) bool {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	woke := make(chan struct{}, len(parts))
	waiting := 0
	for _, fp := range parts {
		if fp.failed {
			continue
		}
		waiting++
		go func() {
			// A read at the end waits for the first record written there;
			// its answer is dropped, the next pass reads again.
			// A failure wakes the request too: the next pass reports it.
			_, _ = s.deps.Storage.Read(wctx, &storagev1.ReadRequest{
				Log: logid.Partition(fp.q.GetId(), fp.req.Partition), Offset: fp.end, MaxBytes: 1, RawBatches: true,
				MaxWait: durationpb.New(time.Until(deadline)),
			})
			woke <- struct{}{}
		}()
	}
	if waiting == 0 {
		return false
	}
	select {
	case <-woke:
		return ctx.Err() == nil
	case <-wctx.Done():
		return false
	}
}
