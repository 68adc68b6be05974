package dms

import (
	"context"
	"iter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// QueueMode selects how a queue orders and stores its messages.
type QueueMode int32

// The queue modes.
const (
	// QueueModeNormal spreads messages over several partitions; order is
	// kept within a partition. It is what the server picks when a
	// QueueConfig leaves the mode zero.
	QueueModeNormal QueueMode = QueueMode(dmsv1.QueueMode_QUEUE_MODE_NORMAL)
	// QueueModeFIFO keeps one strict order for the whole queue: a group is
	// not given message n+1 while message n is in flight.
	QueueModeFIFO QueueMode = QueueMode(dmsv1.QueueMode_QUEUE_MODE_FIFO)
	// QueueModeKafkaHA is for Kafka clients; writes are flushed before they
	// are acknowledged.
	QueueModeKafkaHA QueueMode = QueueMode(dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA)
	// QueueModeKafkaHT is for Kafka clients; writes are acknowledged once
	// written and flushed shortly after, for throughput.
	QueueModeKafkaHT QueueMode = QueueMode(dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT)
	// QueueModeAMQP is for AMQP clients.
	QueueModeAMQP QueueMode = QueueMode(dmsv1.QueueMode_QUEUE_MODE_AMQP)
)

func (m QueueMode) String() string { return dmsv1.QueueMode(m).String() }

// QueueConfig describes a queue to create. Only Name is required; zero fields
// take the server's defaults.
type QueueConfig struct {
	// Name is the display name: 1 to 64 characters of [A-Za-z0-9_-], unique
	// in the project, not shaped like a UUID.
	Name string
	// Description is free text of at most 160 characters, without < or >.
	Description string
	// Mode is how the queue orders and stores messages; normal when zero.
	Mode QueueMode
	// Partitions is the number of partitions; the server's default (3) for
	// normal queues when zero, always 1 for FIFO queues.
	Partitions int
	// Retention is how long messages are kept; the server's default (and
	// maximum, 72 h) when zero.
	Retention time.Duration
	// DeadLetters enables dead-letter queues: a message that failed
	// MaxConsumeCount times moves to its group's dead-letter queue.
	DeadLetters bool
	// MaxConsumeCount is 1 to 100; required when DeadLetters is set.
	MaxConsumeCount int
	// ReplicationFactor is how many nodes keep each partition; the
	// cluster's default when zero.
	ReplicationFactor int
}

// Queue is a queue as the server describes it.
type Queue struct {
	// Name is the resource name, projects/{project}/queues/{id}.
	Name string
	// ID is the UUID assigned at creation.
	ID string
	// DisplayName is the name given at creation.
	DisplayName     string
	Description     string
	Mode            QueueMode
	Partitions      int
	Retention       time.Duration
	DeadLetters     bool
	MaxConsumeCount int
	CreateTime      time.Time
	// MessageCount is the number of messages currently retained.
	MessageCount int64
	// GroupCount is the number of consumer groups.
	GroupCount int
	// MaxMessageBytes is the largest accepted message (body plus
	// attributes).
	MaxMessageBytes int
	// ReplicationFactor is how many nodes keep each partition.
	ReplicationFactor int
}

// Group is a consumer group as the server describes it.
type Group struct {
	// Name is the resource name, projects/{project}/queues/{queue id}/groups/{id}.
	Name string
	// ID is assigned at creation: "g-" followed by a UUID.
	ID string
	// DisplayName is the name given at creation.
	DisplayName string
	CreateTime  time.Time
	// Stats are the group's consumption counts.
	Stats GroupStats
	// TagFilter is the group's tag filter, nil until a receive set one (see
	// ReceiveOptions.TagFilter).
	TagFilter *TagFilter
}

// GroupStats counts what a consumer group has done with its queue.
type GroupStats struct {
	// Produced is the number of messages retained in the queue.
	Produced int64
	// Consumed is the number of retained messages the group acked.
	Consumed int64
	// Available is the number of retained messages the group has not acked,
	// in flight or not.
	Available int64
	// InFlight is the number of messages delivered and not yet acked.
	InFlight int64
	// DeadLetters is the number of the group's messages that became dead
	// letters and are still retained (zero when the queue keeps none).
	DeadLetters int64
	// AvailableDeadLetters is the number of dead letters not acked yet.
	AvailableDeadLetters int64
	// OldestUnackedAge is the age of the oldest message the group has not
	// acked; zero when there is none. A growing age means the group falls
	// behind or a message keeps failing.
	OldestUnackedAge time.Duration
}

// CreateQueue creates a queue in the project.
func (p *Project) CreateQueue(ctx context.Context, cfg QueueConfig) (*Queue, error) {
	q := &dmsv1.Queue{
		DisplayName:       cfg.Name,
		Description:       cfg.Description,
		Mode:              dmsv1.QueueMode(cfg.Mode),
		PartitionCount:    int32(cfg.Partitions),
		DeadLetterEnabled: cfg.DeadLetters,
		MaxConsumeCount:   int32(cfg.MaxConsumeCount),
		ReplicationFactor: int32(cfg.ReplicationFactor),
	}
	if cfg.Retention != 0 {
		q.Retention = durationpb.New(cfg.Retention)
	}
	resp, err := p.client.queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: p.resource(), Queue: q})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// GetQueue returns a queue, named by display name or id, with its current
// counts.
func (p *Project) GetQueue(ctx context.Context, queue string) (*Queue, error) {
	resp, err := p.client.queues.GetQueue(ctx, &dmsv1.GetQueueRequest{Name: p.queueResource(queue)})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// ListQueues iterates over the queues of the project, oldest first, fetching
// them page by page as the loop goes. An error ends the iteration:
//
//	for q, err := range project.ListQueues(ctx) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(q.DisplayName)
//	}
func (p *Project) ListQueues(ctx context.Context) iter.Seq2[*Queue, error] {
	return func(yield func(*Queue, error) bool) {
		token := ""
		for {
			resp, err := p.client.queues.ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: p.resource(), PageSize: p.client.listPageSize, PageToken: token})
			if err != nil {
				yield(nil, fromRPC(ctx, err))
				return
			}
			for _, q := range resp.GetQueues() {
				if !yield(queueFromProto(q), nil) {
					return
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// DeleteQueue deletes a queue with its consumer groups and messages. It
// cannot be undone.
func (p *Project) DeleteQueue(ctx context.Context, queue string) error {
	_, err := p.client.queues.DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: p.queueResource(queue)})
	return fromRPC(ctx, err)
}

// AddPartitions raises a normal queue's partition count to n while it is in
// use. Messages with an ordering key keep the partition their key had, so
// each key keeps its order; the new partitions take messages without a key.
func (p *Project) AddPartitions(ctx context.Context, queue string, n int) (*Queue, error) {
	resp, err := p.client.queues.AddPartitions(ctx, &dmsv1.AddPartitionsRequest{Name: p.queueResource(queue), PartitionCount: int32(n)})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return queueFromProto(resp.GetQueue()), nil
}

// CreateGroup creates a consumer group named name on a queue. A new group
// starts at the earliest retained message of the queue.
func (p *Project) CreateGroup(ctx context.Context, queue, name string) (*Group, error) {
	resp, err := p.client.queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{
		Parent: p.queueResource(queue),
		Group:  &dmsv1.ConsumerGroup{DisplayName: name},
	})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return groupFromProto(resp.GetGroup()), nil
}

// GetGroup returns a consumer group with its counts.
func (p *Project) GetGroup(ctx context.Context, queue, group string) (*Group, error) {
	resp, err := p.client.queues.GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: p.groupResource(queue, group)})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return groupFromProto(resp.GetGroup()), nil
}

// ListGroups returns the consumer groups of a queue with their counts,
// oldest first. A queue has few groups, so they come in one call.
func (p *Project) ListGroups(ctx context.Context, queue string) ([]*Group, error) {
	resp, err := p.client.queues.ListConsumerGroups(ctx, &dmsv1.ListConsumerGroupsRequest{Parent: p.queueResource(queue)})
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	groups := make([]*Group, len(resp.GetGroups()))
	for i, g := range resp.GetGroups() {
		groups[i] = groupFromProto(g)
	}
	return groups, nil
}

// DeleteGroup deletes a consumer group and its consumption state.
func (p *Project) DeleteGroup(ctx context.Context, queue, group string) error {
	_, err := p.client.queues.DeleteConsumerGroup(ctx, &dmsv1.DeleteConsumerGroupRequest{Name: p.groupResource(queue, group)})
	return fromRPC(ctx, err)
}

func queueFromProto(q *dmsv1.Queue) *Queue {
	out := &Queue{
		Name:              q.GetName(),
		ID:                q.GetId(),
		DisplayName:       q.GetDisplayName(),
		Description:       q.GetDescription(),
		Mode:              QueueMode(q.GetMode()),
		Partitions:        int(q.GetPartitionCount()),
		DeadLetters:       q.GetDeadLetterEnabled(),
		MaxConsumeCount:   int(q.GetMaxConsumeCount()),
		MessageCount:      q.GetMessageCount(),
		GroupCount:        int(q.GetGroupCount()),
		MaxMessageBytes:   int(q.GetMaxMessageBytes()),
		ReplicationFactor: int(q.GetReplicationFactor()),
	}
	if q.GetRetention() != nil {
		out.Retention = q.GetRetention().AsDuration()
	}
	if q.GetCreateTime() != nil {
		out.CreateTime = q.GetCreateTime().AsTime()
	}
	return out
}

func groupFromProto(g *dmsv1.ConsumerGroup) *Group {
	out := &Group{
		Name:        g.GetName(),
		ID:          g.GetId(),
		DisplayName: g.GetDisplayName(),
		Stats: GroupStats{
			Produced:  g.GetStats().GetProducedMessages(),
			Consumed:  g.GetStats().GetConsumedMessages(),
			Available: g.GetStats().GetAvailableMessages(),
			InFlight:  g.GetStats().GetInFlightMessages(),

			DeadLetters:          g.GetStats().GetProducedDeadLetters(),
			AvailableDeadLetters: g.GetStats().GetAvailableDeadLetters(),
		},
		TagFilter: tagFilterFromProto(g.GetTagFilter()),
	}
	if age := g.GetStats().GetOldestUnackedAge(); age != nil {
		out.Stats.OldestUnackedAge = age.AsDuration()
	}
	if g.GetCreateTime() != nil {
		out.CreateTime = g.GetCreateTime().AsTime()
	}
	return out
}
