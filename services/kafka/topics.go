package kafka

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
)

// Topics are the KAFKA_HA and KAFKA_HT queues of the connection's project,
// by display name. Queues of the other modes are not topics: their
// partitions hold native batches that a Kafka fetch would have to re-encode
// at every read, and a Kafka producer writing into a FIFO queue would break
// the order its consumers rely on. Naming one as a topic gets
// INVALID_TOPIC_EXCEPTION, never a second queue of the same name.

// isTopic reports whether a queue is served as a Kafka topic.
func isTopic(q *metadatav1.QueueRecord) bool {
	switch q.GetMode() {
	case dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT:
		return true
	}
	return false
}

// parseTopicMode reads a dms.queue.mode config value.
func parseTopicMode(s string) (dmsv1.QueueMode, error) {
	switch strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "QUEUE_MODE_") {
	case "KAFKA_HA":
		return dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, nil
	case "KAFKA_HT":
		return dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT, nil
	}
	return 0, fmt.Errorf("topic mode %q: use KAFKA_HA or KAFKA_HT", s)
}

// modeName is the dms.queue.mode value of a queue mode.
func modeName(m dmsv1.QueueMode) string { return strings.TrimPrefix(m.String(), "QUEUE_MODE_") }

// project returns the project a request acts in: the one its connection
// authenticated for, or the default project without authentication.
func (s *Server) project(r *request) string {
	if r != nil && r.conn != nil && r.conn.project != "" {
		return r.conn.project
	}
	return s.cfg.DefaultProject
}

// topics returns the topics of a project that the request may see, oldest
// first.
func (s *Server) topics(ctx context.Context, project string) []*metadatav1.QueueRecord {
	var out []*metadatav1.QueueRecord
	for _, q := range s.deps.Catalog.Queues(project) {
		if isTopic(q) && s.authorizeTopic(ctx, project, q.GetDisplayName()) == nil {
			out = append(out, q)
		}
	}
	return out
}

// topic finds a topic by name. Errors are Kafka errors: an unknown topic,
// a name no queue can have, a queue that is not a topic.
func (s *Server) topic(ctx context.Context, project, name string) (*metadatav1.QueueRecord, error) {
	if err := catalog.ValidateQueueDisplayName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", kerr.InvalidTopicException, err)
	}
	if err := s.authorizeTopic(ctx, project, name); err != nil {
		return nil, err
	}
	q, err := s.deps.Catalog.ResolveQueue(ctx, project, name)
	if err != nil {
		if catalog.IsNotFound(err) {
			return nil, fmt.Errorf("%w: topic %q does not exist", kerr.UnknownTopicOrPartition, name)
		}
		return nil, err
	}
	if !isTopic(q) {
		return nil, fmt.Errorf("%w: %q is a %s queue, not a Kafka topic", kerr.InvalidTopicException, name, modeName(q.GetMode()))
	}
	return q, nil
}

// topicOrCreate finds a topic, creating it when it does not exist and
// auto-creation is on.
func (s *Server) topicOrCreate(ctx context.Context, project, name string) (*metadatav1.QueueRecord, error) {
	q, err := s.topic(ctx, project, name)
	if !s.cfg.AutoCreateTopics || errorCode(err) != kerr.UnknownTopicOrPartition.Code {
		return q, err
	}
	mode, _ := parseTopicMode(s.cfg.DefaultTopicMode)
	q, err = s.createTopic(ctx, project, topicSpec{name: name, mode: mode})
	if errorCode(err) == kerr.TopicAlreadyExists.Code {
		// Another client created it at the same time.
		return s.topic(ctx, project, name)
	}
	return q, err
}

// topicSpec is what creating a topic takes; zero values take the
// defaults of the metadata role.
type topicSpec struct {
	name              string
	mode              dmsv1.QueueMode
	partitions        int32
	replicationFactor int32
	retentionMs       int64
}

// createTopic creates a topic's queue through the metadata role.
func (s *Server) createTopic(ctx context.Context, project string, spec topicSpec) (*metadatav1.QueueRecord, error) {
	if err := s.authorizeTopicAction(ctx, project, spec.name, authz.CreateQueue); err != nil {
		return nil, err
	}
	q := &dmsv1.Queue{DisplayName: spec.name, Mode: spec.mode, PartitionCount: spec.partitions, ReplicationFactor: spec.replicationFactor}
	if spec.retentionMs > 0 {
		q.Retention = durationpb.New(time.Duration(spec.retentionMs) * time.Millisecond)
	}
	resp, err := s.deps.Queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: catalog.ProjectResource(project), Queue: q})
	if err != nil {
		return nil, err
	}
	s.logger.Info("kafka: topic created", "project", project, "topic", spec.name, "queue", resp.GetQueue().GetId(),
		"mode", modeName(resp.GetQueue().GetMode()), "partitions", resp.GetQueue().GetPartitionCount())
	return s.deps.Catalog.QueueByID(ctx, resp.GetQueue().GetId())
}

// topicID returns a queue's id as a Kafka topic id: both are UUIDs.
func topicID(q *metadatav1.QueueRecord) [16]byte {
	id, err := uuid.Parse(q.GetId())
	if err != nil {
		return [16]byte{}
	}
	return id
}

// topicByID finds a topic by its Kafka topic id.
func (s *Server) topicByID(ctx context.Context, project string, id [16]byte) (*metadatav1.QueueRecord, error) {
	q, err := s.deps.Catalog.QueueByID(ctx, uuid.UUID(id).String())
	if err != nil || q.GetProject() != project || !isTopic(q) {
		if err == nil || catalog.IsNotFound(err) {
			return nil, fmt.Errorf("%w: no topic has id %s", kerr.UnknownTopicID, uuid.UUID(id))
		}
		return nil, err
	}
	if err := s.authorizeTopic(ctx, project, q.GetDisplayName()); err != nil {
		return nil, err
	}
	return q, nil
}

// brokerID is a node's Kafka broker id. Kafka names brokers by number and
// DMS nodes by name; the number is a hash of the name, the same on every
// node and across restarts without any state to keep. Two names of one
// cluster with the same hash (about one chance in a billion for ten
// nodes) are logged when Metadata lists them.
func brokerID(node string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return int32(h.Sum32() & 0x7fffffff)
}

// partitionError is the error of a partition a topic does not have.
func partitionError(q *metadatav1.QueueRecord, p int32) error {
	if p >= 0 && p < q.GetPartitionCount() {
		return nil
	}
	return fmt.Errorf("%w: topic %q has partitions 0 to %d, not %d", kerr.UnknownTopicOrPartition, q.GetDisplayName(), q.GetPartitionCount()-1, p)
}
