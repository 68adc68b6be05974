package kafka

// OffsetCommit (key 8): versions 0-9.
//
// Committed offsets are kept by the group's coordinator in the replicated
// log of the group's delivery shard (Kafka's __consumer_offsets), durable
// before the answer. A member commits with its generation (v1+; v9's
// member epoch is the generation of a classic group); generation -1 without
// a member is a commit from outside group management, allowed while the
// group has no members (v0 is always such a commit). Partitions of topics
// that do not exist, or beyond a topic's partitions, are refused with
// UNKNOWN_TOPIC_OR_PARTITION, metadata over 4096 bytes with
// OFFSET_METADATA_TOO_LARGE (Kafka's offset.metadata.max.bytes); the
// others share the group's answer. The retention time of v2-4 is ignored:
// offsets are kept until the group is deleted. v10 (topic ids) is not
// served yet.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.OffsetCommit.Int16(), 0, 9, (*Server).offsetCommit) }

// maxOffsetMetadata is Kafka's offset.metadata.max.bytes default.
const maxOffsetMetadata = 4096

func (s *Server) offsetCommit(ctx context.Context, r *request, req *kmsg.OffsetCommitRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	project := s.project(r)
	cr := groups.CommitRequest{Generation: -1, Offsets: map[groups.TopicPartition]groups.Offset{}}
	if req.Version >= 1 {
		cr.MemberID, cr.InstanceID, cr.Generation = req.MemberID, deref(req.InstanceID), req.Generation
	}
	// codes holds each partition's refusal; 0 for the committed ones,
	// filled in with the group's answer.
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
		q, err := s.topic(ctx, project, t.Topic)
		for j, p := range t.Partitions {
			switch {
			case err != nil:
				codes[i][j] = errorCode(err)
			case partitionError(q, p.Partition) != nil:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxOffsetMetadata:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				epoch := p.LeaderEpoch
				if req.Version < 6 {
					epoch = -1
				}
				cr.Offsets[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = groups.Offset{Offset: p.Offset, LeaderEpoch: epoch, Metadata: deref(p.Metadata)}
			}
		}
	}
	var groupCode int16
	if len(cr.Offsets) > 0 {
		groupCode = groups.Code(s.groups.Commit(ctx, project, req.Group, cr))
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
			if rp.ErrorCode == 0 {
				rp.ErrorCode = groupCode
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
