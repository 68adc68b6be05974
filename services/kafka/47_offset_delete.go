package kafka

// OffsetDelete (key 47): version 0.
//
// Deletes committed offsets of a group. Partitions of a topic the group's
// members subscribe to are refused with GROUP_SUBSCRIBED_TO_TOPIC (from
// the members' consumer-protocol subscriptions); the others are deleted
// durably. An unknown group is GROUP_ID_NOT_FOUND.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.OffsetDelete.Int16(), 0, 0, (*Server).offsetDelete) }

func (s *Server) offsetDelete(ctx context.Context, r *request, req *kmsg.OffsetDeleteRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	var asked []groups.TopicPartition
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			asked = append(asked, groups.TopicPartition{Topic: t.Topic, Partition: p.Partition})
		}
	}
	refused, err := s.groups.DeleteOffsets(ctx, s.project(r), req.Group, asked)
	if err != nil {
		resp.ErrorCode = groups.Code(err)
		return resp, nil
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if e := refused[groups.TopicPartition{Topic: t.Topic, Partition: p.Partition}]; e != nil {
				rp.ErrorCode = e.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
