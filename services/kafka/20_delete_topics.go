package kafka

// DeleteTopics (key 20): versions 0-6.
//
// Deletes the topic's queue through the metadata role's QueueService, by
// name (v0-5) or by topic id (v6). The queue's partitions and its DMS
// consumer groups go with it, as when the queue is deleted through the
// DMS API. A queue of another mode than KAFKA_HA or KAFKA_HT is not a
// topic and is never deleted through Kafka (INVALID_TOPIC_EXCEPTION).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

func init() { register(kmsg.DeleteTopics.Int16(), 0, 6, (*Server).deleteTopics) }

func (s *Server) deleteTopics(ctx context.Context, r *request, req *kmsg.DeleteTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	project := s.project(r)
	topics := req.Topics
	if req.Version < 6 {
		topics = nil
		for _, name := range req.TopicNames {
			topics = append(topics, kmsg.DeleteTopicsRequestTopic{Topic: &name})
		}
	}
	for _, t := range topics {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		var q *metadatav1.QueueRecord
		var err error
		if t.Topic != nil {
			q, err = s.topic(ctx, project, *t.Topic)
		} else {
			q, err = s.topicByID(ctx, project, t.TopicID)
		}
		if err == nil {
			name := q.GetDisplayName()
			rt.Topic, rt.TopicID = &name, topicID(q)
			_, err = s.deps.Queues.DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: catalog.QueueResource(project, q.GetId())})
		}
		if err != nil {
			rt.ErrorCode, rt.ErrorMessage = errorCode(err), errorMessage(err)
		} else {
			s.logger.Info("kafka: topic deleted", "project", project, "topic", q.GetDisplayName(), "queue", q.GetId())
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
