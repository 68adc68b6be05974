package kafka

// CreateTopics (key 19): versions 0-7.
//
// A topic is a queue of the connection's project created through the
// metadata role's QueueService: mode from the dms.queue.mode config
// (KAFKA_HA or KAFKA_HT, else -kafka.default-topic-mode), retention from
// retention.ms, partitions and replication factor as asked (-1: the
// metadata role's defaults). Configs DMS does not have are INVALID_CONFIG,
// and so are fixed ones given another value than they have (see
// topicconfig.go); a manual replica assignment is INVALID_REQUEST, since
// DMS places replicas itself. validate_only checks the name, that no queue
// has it, and the configs; the partition and replication limits are the
// metadata role's and are checked when a topic is really created. From v5
// the answer carries the topic's partitions, replication factor and
// configs.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/catalog"
)

func init() { register(kmsg.CreateTopics.Int16(), 0, 7, (*Server).createTopics) }

func (s *Server) createTopics(ctx context.Context, r *request, req *kmsg.CreateTopicsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	project := s.project(r)
	seen := map[string]int{}
	for _, t := range req.Topics {
		seen[t.Topic]++
	}
	for _, t := range req.Topics {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t.Topic, t.NumPartitions, t.ReplicationFactor
		err := s.createTopicOf(ctx, project, &t, req.ValidateOnly, seen[t.Topic] > 1, &rt)
		if err != nil {
			rt.ErrorCode, rt.ErrorMessage = errorCode(err), errorMessage(err)
			rt.NumPartitions, rt.ReplicationFactor = -1, -1
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}

func (s *Server) createTopicOf(ctx context.Context, project string, t *kmsg.CreateTopicsRequestTopic, validateOnly, duplicate bool, rt *kmsg.CreateTopicsResponseTopic) error {
	spec := topicSpec{name: t.Topic, partitions: max(t.NumPartitions, 0), replicationFactor: max(int32(t.ReplicationFactor), 0)}
	switch {
	case duplicate:
		return fmt.Errorf("%w: topic %q is named more than once in the request", kerr.InvalidRequest, t.Topic)
	case len(t.ReplicaAssignment) > 0:
		return fmt.Errorf("%w: DMS places replicas itself; give a partition count and a replication factor instead of an assignment", kerr.InvalidRequest)
	case t.NumPartitions == 0 || t.NumPartitions < -1:
		return fmt.Errorf("%w: %d partitions; give at least 1, or -1 for the default", kerr.InvalidPartitions, t.NumPartitions)
	case t.ReplicationFactor == 0 || t.ReplicationFactor < -1:
		return fmt.Errorf("%w: replication factor %d; give at least 1, or -1 for the default", kerr.InvalidReplicationFactor, t.ReplicationFactor)
	}
	if err := catalog.ValidateQueueDisplayName(t.Topic); err != nil {
		return fmt.Errorf("%w: %v", kerr.InvalidTopicException, err)
	}
	if err := s.parseCreateConfigs(&spec, t.Configs); err != nil {
		return err
	}
	if validateOnly {
		if _, err := s.deps.Catalog.ResolveQueue(ctx, project, t.Topic); err == nil {
			return fmt.Errorf("%w: a queue named %q exists", kerr.TopicAlreadyExists, t.Topic)
		} else if !catalog.IsNotFound(err) {
			return err
		}
		return nil
	}
	q, err := s.createTopic(ctx, project, spec)
	if err != nil {
		return err
	}
	rt.TopicID = topicID(q)
	rt.NumPartitions, rt.ReplicationFactor = q.GetPartitionCount(), int16(q.GetReplicationFactor())
	for _, c := range s.topicConfigs(q) {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly = c.name, &c.value, true
		rc.Source = int8(kmsg.ConfigSourceDefaultConfig)
		if !c.isDefault {
			rc.Source = int8(kmsg.ConfigSourceDynamicTopicConfig)
		}
		rt.Configs = append(rt.Configs, rc)
	}
	return nil
}
