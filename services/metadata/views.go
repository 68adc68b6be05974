package metadata

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/storage/logid"
)

// Views assembles what a client sees of queues and consumer groups: the
// catalog's records with the counts that other roles keep (message counts
// from storage, consumption counts from delivery, scheduled messages from
// the scheduler). It changes nothing.
type Views struct {
	cache     *catalog.Cache
	storage   storagev1.StorageServiceClient
	delivery  deliveryv1.DeliveryServiceClient
	scheduler schedulerv1.SchedulerServiceClient
	logger    *slog.Logger
}

// NewViews returns views that ask the roles through these clients.
func NewViews(cache *catalog.Cache, storage storagev1.StorageServiceClient, delivery deliveryv1.DeliveryServiceClient,
	scheduler schedulerv1.SchedulerServiceClient, logger *slog.Logger) *Views {
	return &Views{cache: cache, storage: storage, delivery: delivery, scheduler: scheduler, logger: logger}
}

// scheduleStatsTimeout bounds the wait for the scheduler's counts, which a
// scheduler still loading its timers after a restart cannot give at once.
const scheduleStatsTimeout = 2 * time.Second

// Queues returns the views of queues with their message, group and
// scheduled-message counts, asking storage once for all partitions.
func (v *Views) Queues(ctx context.Context, queues []*metadatav1.QueueRecord) ([]*dmsv1.Queue, error) {
	var logs []*storagev1.LogId
	for _, q := range queues {
		for p := range q.GetPartitionCount() {
			logs = append(logs, logid.Partition(q.GetId(), p))
		}
	}
	counts := map[string]int64{}
	if len(logs) > 0 {
		info, err := v.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
		if err != nil {
			return nil, err
		}
		for _, li := range info.GetLogs() {
			counts[li.GetLog().GetQueueId()] += li.GetNextOffset() - li.GetStartOffset()
		}
	}
	out := make([]*dmsv1.Queue, len(queues))
	for i, q := range queues {
		out[i] = queueMessage(q, counts[q.GetId()], int32(len(v.cache.Groups(q.GetId()))))
	}
	v.addSchedules(ctx, out)
	return out, nil
}

// addSchedules adds the scheduler's pending counts and next due times. The
// queue stays readable when the scheduler is not: the fields stay unset and
// the failure is logged.
func (v *Views) addSchedules(ctx context.Context, queues []*dmsv1.Queue) {
	if len(queues) == 0 {
		return
	}
	ids := make([]string, len(queues))
	for i, q := range queues {
		ids[i] = q.GetId()
	}
	ctx, cancel := context.WithTimeout(ctx, scheduleStatsTimeout)
	defer cancel()
	resp, err := v.scheduler.GetQueueSchedules(ctx, &schedulerv1.GetQueueSchedulesRequest{QueueIds: ids})
	if err != nil {
		v.logger.Warn("queue stats without scheduled messages: the scheduler did not answer", "err", err)
		return
	}
	for i, s := range resp.GetQueues() {
		if i < len(queues) {
			queues[i].ScheduledMessageCount = s.GetPendingCount()
			if s.GetNextDueMs() > 0 {
				queues[i].NextScheduledTime = timestamppb.New(time.UnixMilli(s.GetNextDueMs()))
			}
		}
	}
}

// Groups returns the views of consumer groups of a queue with their
// consumption counts and tag filters.
func (v *Views) Groups(ctx context.Context, q *metadatav1.QueueRecord, groups []*metadatav1.GroupRecord) ([]*dmsv1.ConsumerGroup, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = g.GetId()
	}
	stats, err := v.delivery.GetGroupStats(ctx, &deliveryv1.GetGroupStatsRequest{QueueId: q.GetId(), GroupIds: ids})
	if err != nil {
		return nil, err
	}
	out := make([]*dmsv1.ConsumerGroup, len(groups))
	for i, g := range groups {
		out[i] = groupMessage(q, g, nil)
		if i < len(stats.GetStats()) {
			out[i].Stats = stats.GetStats()[i]
		}
		if i < len(stats.GetTagFilters()) && len(stats.GetTagFilters()[i].GetTags()) > 0 {
			out[i].TagFilter = stats.GetTagFilters()[i]
		}
	}
	return out, nil
}

func queueMessage(q *metadatav1.QueueRecord, messages int64, groups int32) *dmsv1.Queue {
	return &dmsv1.Queue{
		Name:              catalog.QueueResource(q.GetProject(), q.GetId()),
		Id:                q.GetId(),
		DisplayName:       q.GetDisplayName(),
		Description:       q.GetDescription(),
		Mode:              q.GetMode(),
		PartitionCount:    q.GetPartitionCount(),
		Retention:         durationpb.New(time.Duration(q.GetRetentionMs()) * time.Millisecond),
		DeadLetterEnabled: q.GetDeadLetterEnabled(),
		MaxConsumeCount:   q.GetMaxConsumeCount(),
		CreateTime:        timestamppb.New(time.UnixMilli(q.GetCreateTimeMs())),
		MessageCount:      messages,
		GroupCount:        groups,
		MaxMessageBytes:   message.MaxBytes,
		ReplicationFactor: q.GetReplicationFactor(),
		Labels:            q.GetLabels(),
	}
}

func groupMessage(q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, stats *dmsv1.ConsumerGroupStats) *dmsv1.ConsumerGroup {
	return &dmsv1.ConsumerGroup{
		Name:        catalog.GroupResource(q.GetProject(), q.GetId(), g.GetId()),
		Id:          g.GetId(),
		DisplayName: g.GetDisplayName(),
		CreateTime:  timestamppb.New(time.UnixMilli(g.GetCreateTimeMs())),
		Stats:       stats,
	}
}
