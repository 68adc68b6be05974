package kafka

// DeleteRecords (key 21): versions 0-2, every partition refused.
//
// Kafka moves a partition's log start to exactly the offset asked, on
// every replica. DMS storage shrinks queue partitions by retention only:
// its trim (TrimLog) serves internal logs, drops whole segments and is not
// replicated as a new log start, so it cannot give Kafka's answer (a low
// watermark equal to the offset asked, the records below it gone for every
// reader). Rather than pretend, every partition is answered
// POLICY_VIOLATION with low watermark -1, nothing is deleted, and the
// reason is logged. Retention (retention.ms) is how data leaves a topic.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DeleteRecords.Int16(), 0, 2, (*Server).deleteRecords) }

func (s *Server) deleteRecords(ctx context.Context, r *request, req *kmsg.DeleteRecordsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	project := s.project(r)
	for _, t := range req.Topics {
		rt := kmsg.NewDeleteRecordsResponseTopic()
		rt.Topic = t.Topic
		q, err := s.topic(ctx, project, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewDeleteRecordsResponseTopicPartition()
			rp.Partition, rp.LowWatermark, rp.ErrorCode = p.Partition, -1, kerr.PolicyViolation.Code
			if err != nil {
				rp.ErrorCode = errorCode(err)
			} else if perr := partitionError(q, p.Partition); perr != nil {
				rp.ErrorCode = errorCode(perr)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	s.logger.Info("kafka: DeleteRecords refused: DMS topics shrink by retention only (retention.ms), not to an offset",
		"remote", r.conn.remote, "client_id", r.clientID)
	return resp, nil
}
