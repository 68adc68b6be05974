package kafka

// OffsetForLeaderEpoch (key 23): versions 0-4.
//
// Answers from storage's leader epoch history of the partition, on its
// leader: for the epoch asked, the largest epoch the leader knows at or
// below it and the offset where that epoch ends (the log's end for the
// current epoch), as Kafka's KIP-101/KIP-320 define it; -1 and -1 when the
// log has no epoch at or below it. Consumers use it to check their
// position after a leader change. The client's current leader epoch (v2+)
// is checked as in Fetch (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH).
// Replicas of DMS do not replicate over Kafka's protocol, so the replica
// id (v3+) is not used.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/storage/logid"
)

func init() { register(kmsg.OffsetForLeaderEpoch.Int16(), 0, 4, (*Server).offsetForLeaderEpoch) }

func (s *Server) offsetForLeaderEpoch(ctx context.Context, r *request, req *kmsg.OffsetForLeaderEpochRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	project := s.project(r)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
		rt.Topic = t.Topic
		q, terr := s.topic(ctx, project, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			rp.Partition, rp.LeaderEpoch, rp.EndOffset = p.Partition, -1, -1
			err := terr
			if err == nil {
				err = s.checkLeaderEpoch(q, p.Partition, p.CurrentLeaderEpoch)
			}
			if err == nil {
				var out *storagev1.OffsetForLeaderEpochResponse
				id := logid.Partition(q.GetId(), p.Partition)
				out, err = s.deps.Storage.OffsetForLeaderEpoch(ctx, &storagev1.OffsetForLeaderEpochRequest{
					Unit:    placement.PartitionUnit(q.GetId(), p.Partition),
					Queries: []*storagev1.EpochQuery{{Log: id, Epoch: int64(p.LeaderEpoch)}},
				})
				switch {
				case err != nil:
				case out.GetErrorReason() != "":
					err = reasonError(out.GetErrorReason())
				case len(out.GetEnds()) == 1:
					rp.LeaderEpoch, rp.EndOffset = int32(out.GetEnds()[0].GetEpoch()), out.GetEnds()[0].GetEndOffset()
					if current := s.leaderEpoch(q, p.Partition); rp.LeaderEpoch < 0 && current >= 0 && p.LeaderEpoch >= current {
						// A log no write has reached yet has no epoch
						// history; what it will hold is the current
						// epoch's, which ends at the log's end.
						rp.LeaderEpoch, rp.EndOffset, err = s.currentEpochEnd(ctx, id, current)
					}
				}
			}
			if err != nil {
				rp.ErrorCode, rp.LeaderEpoch, rp.EndOffset = errorCode(err), -1, -1
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

// currentEpochEnd answers for the current epoch: it ends at the log's end.
func (s *Server) currentEpochEnd(ctx context.Context, id *storagev1.LogId, current int32) (int32, int64, error) {
	info, err := s.deps.Storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{id}})
	if err != nil {
		return -1, -1, err
	}
	return current, info.GetLogs()[0].GetNextOffset(), nil
}
