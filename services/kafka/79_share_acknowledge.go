package kafka

// ShareAcknowledge (key 79): version 1.
//
// Settles messages a share session holds, as the acknowledgements of a
// ShareFetch do (share.go): accept and reject ack them, release fails them
// (available again at once, the attempt counted). An offset the session
// does not hold — its lock expired and another consumer has it, or it was
// settled — is INVALID_RECORD_STATE for its partition. Epoch 0 cannot
// acknowledge (INVALID_SHARE_SESSION_EPOCH); -1 closes the session after
// the acknowledgements, releasing what it still holds.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.ShareAcknowledge.Int16(), 1, 1, (*Server).shareAcknowledge) }

func (s *Server) shareAcknowledge(ctx context.Context, r *request, req *kmsg.ShareAcknowledgeRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	project := s.project(r)
	group, member := deref(req.GroupID), deref(req.MemberID)
	if group == "" || member == "" {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp, nil
	}
	if req.ShareSessionEpoch == 0 {
		resp.ErrorCode = kerr.InvalidShareSessionEpoch.Code
		return resp, nil
	}
	sess, err := s.session(r, groups.Key(project, group)+"\x00"+member, req.ShareSessionEpoch)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		return resp, nil
	}
	for _, t := range req.Topics {
		rt := kmsg.NewShareAcknowledgeResponseTopic()
		rt.TopicID = t.TopicID
		q, terr := s.topicByID(ctx, project, t.TopicID)
		for _, p := range t.Partitions {
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition, rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = p.Partition, -1, -1
			err := terr
			if err == nil {
				err = partitionError(q, p.Partition)
			}
			if err == nil {
				var batches []ackBatch
				for _, b := range p.AcknowledgementBatches {
					batches = append(batches, ackBatch{b.FirstOffset, b.LastOffset, b.AcknowledgeTypes})
				}
				err = s.acknowledge(ctx, sess, sharePartition{t.TopicID, p.Partition}, batches)
			}
			rp.ErrorCode, rp.ErrorMessage = errorCode(err), errorMessage(err)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if req.ShareSessionEpoch == -1 {
		s.releaseAll(sess)
	}
	return resp, nil
}
