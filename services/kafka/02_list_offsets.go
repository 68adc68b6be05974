package kafka

// ListOffsets (key 2): versions 0-6.
//
// Earliest (-2) is the partition's first retained offset and latest (-1)
// its high watermark (what consumers can read; no transactions, so the
// same at both isolation levels), from storage's log info on the leader.
// A timestamp finds the first record stored at or after it: storage's time
// index gives the first batch whose largest timestamp reaches it, and the
// front end reads that batch to find the record and its timestamp; none is
// offset -1 and timestamp -1, as in Kafka. The leader epoch of an answer
// is -1 (not known per offset), which tells clients not to validate their
// position by it. v0 answers with the offset in old_style_offsets. The
// largest timestamp (-3, v7) is not served: it needs a scan of the whole
// partition.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
)

func init() { register(kmsg.ListOffsets.Int16(), 0, 6, (*Server).listOffsets) }

const (
	listLatest   = -1
	listEarliest = -2
)

func (s *Server) listOffsets(ctx context.Context, r *request, req *kmsg.ListOffsetsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	project := s.project(r)
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		q, terr := s.topic(ctx, project, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.Timestamp, rp.Offset, rp.LeaderEpoch = p.Partition, -1, -1, -1
			err := terr
			if err == nil {
				err = s.checkLeaderEpoch(q, p.Partition, p.CurrentLeaderEpoch)
			}
			if err == nil {
				rp.Offset, rp.Timestamp, err = s.listOffset(ctx, q, p.Partition, p.Timestamp)
			}
			if err != nil {
				rp.ErrorCode, rp.Offset, rp.Timestamp = errorCode(err), -1, -1
			} else if req.Version == 0 {
				rp.OldStyleOffsets = []int64{rp.Offset}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// listOffset answers one partition: an offset and the timestamp that goes
// with it (-1 for earliest and latest).
func (s *Server) listOffset(ctx context.Context, q *metadatav1.QueueRecord, p int32, ts int64) (int64, int64, error) {
	id := logid.Partition(q.GetId(), p)
	if ts == listLatest || ts == listEarliest {
		info, err := s.deps.Storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{id}})
		if err != nil {
			return -1, -1, err
		}
		li := info.GetLogs()[0]
		if ts == listEarliest {
			return li.GetStartOffset(), -1, nil
		}
		return li.GetNextOffset(), -1, nil
	}
	if ts < 0 {
		return -1, -1, fmt.Errorf("%w: timestamp %d; use -1 (latest), -2 (earliest) or a time in Unix milliseconds", kerr.InvalidRequest, ts)
	}
	found, err := s.deps.Storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: id, TimestampMs: ts})
	if err != nil {
		return -1, -1, err
	}
	// The offset starts the batch that reaches ts (or is a record of a
	// native batch); find the record within it.
	for from := found.GetOffset(); ; {
		rr, err := s.deps.Storage.Read(ctx, &storagev1.ReadRequest{Log: id, Offset: from, MaxBytes: 1, RawBatches: true})
		if err != nil {
			return -1, -1, err
		}
		if len(rr.GetBatches()) == 0 {
			if lost := rr.GetLost(); lost != nil && lost.GetLastOffset() >= from {
				from = lost.GetLastOffset() + 1
				continue
			}
			return -1, -1, nil
		}
		for _, b := range rr.GetBatches() {
			if b.GetMaxTimestampMs() < ts {
				from = b.GetBaseOffset() + int64(b.GetRecordCount())
				continue
			}
			recs, err := recordfmt.Decode(b, from, 0, nil)
			if err != nil {
				return -1, -1, err
			}
			for _, sr := range recs {
				if sr.GetRecord().GetTimestampMs() >= ts {
					return sr.GetOffset(), sr.GetRecord().GetTimestampMs(), nil
				}
			}
			from = b.GetBaseOffset() + int64(b.GetRecordCount())
		}
	}
}
