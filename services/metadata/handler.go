package metadata

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Handler serves the public QueueService and the internal MetadataService
// over the engine; it translates and adds counts from storage, delivery and
// the scheduler.
type Handler struct {
	dmsv1.UnimplementedQueueServiceServer
	metadatav1.UnimplementedMetadataServiceServer

	engine    *Engine
	cache     *catalog.Cache
	cli       *clientv3.Client
	storage   storagev1.StorageServiceClient
	delivery  deliveryv1.DeliveryServiceClient
	scheduler schedulerv1.SchedulerServiceClient
	logger    *slog.Logger
}

// NewHandler returns the gRPC handler of the metadata role.
func NewHandler(engine *Engine, cache *catalog.Cache, cli *clientv3.Client, storage storagev1.StorageServiceClient,
	delivery deliveryv1.DeliveryServiceClient, scheduler schedulerv1.SchedulerServiceClient, logger *slog.Logger) *Handler {
	return &Handler{engine: engine, cache: cache, cli: cli, storage: storage, delivery: delivery, scheduler: scheduler, logger: logger}
}

// scheduleStatsTimeout bounds the wait for the scheduler's counts, which a
// scheduler still loading its timers after a restart cannot give at once.
const scheduleStatsTimeout = 2 * time.Second

// CreateQueue implements dms.v1.QueueService.
func (h *Handler) CreateQueue(ctx context.Context, req *dmsv1.CreateQueueRequest) (*dmsv1.CreateQueueResponse, error) {
	project, err := catalog.ParseProject(req.GetParent())
	if err != nil {
		return nil, err
	}
	q := req.GetQueue()
	rec, err := h.engine.CreateQueue(ctx, project, QueueSpec{
		DisplayName:       q.GetDisplayName(),
		Description:       q.GetDescription(),
		Mode:              q.GetMode(),
		PartitionCount:    q.GetPartitionCount(),
		Retention:         q.GetRetention().AsDuration(),
		DeadLetterEnabled: q.GetDeadLetterEnabled(),
		MaxConsumeCount:   q.GetMaxConsumeCount(),
	})
	if err != nil {
		return nil, err
	}
	return &dmsv1.CreateQueueResponse{Queue: queueMessage(rec, 0, 0)}, nil
}

// GetQueue implements dms.v1.QueueService.
func (h *Handler) GetQueue(ctx context.Context, req *dmsv1.GetQueueRequest) (*dmsv1.GetQueueResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	queues, err := h.withCounts(ctx, []*metadatav1.QueueRecord{q})
	if err != nil {
		return nil, err
	}
	return &dmsv1.GetQueueResponse{Queue: queues[0]}, nil
}

// ListQueues implements dms.v1.QueueService.
func (h *Handler) ListQueues(ctx context.Context, req *dmsv1.ListQueuesRequest) (*dmsv1.ListQueuesResponse, error) {
	project, err := catalog.ParseProject(req.GetParent())
	if err != nil {
		return nil, err
	}
	all := h.cache.Queues(project)
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		if start, err = strconv.Atoi(tok); err != nil || start < 0 || start > len(all) {
			return nil, errs.Wrapf(errs.ErrPageTokenInvalid, "page token %q is not one this server issued", tok)
		}
	}
	end := len(all)
	if n := int(req.GetPageSize()); n > 0 && start+n < end {
		end = start + n
	}
	page, err := h.withCounts(ctx, all[start:end])
	if err != nil {
		return nil, err
	}
	resp := &dmsv1.ListQueuesResponse{Queues: page, TotalSize: int32(len(all))}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// DeleteQueue implements dms.v1.QueueService.
func (h *Handler) DeleteQueue(ctx context.Context, req *dmsv1.DeleteQueueRequest) (*dmsv1.DeleteQueueResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &dmsv1.DeleteQueueResponse{}, h.engine.DeleteQueue(ctx, q)
}

// CreateConsumerGroup implements dms.v1.QueueService.
func (h *Handler) CreateConsumerGroup(ctx context.Context, req *dmsv1.CreateConsumerGroupRequest) (*dmsv1.CreateConsumerGroupResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetParent())
	if err != nil {
		return nil, err
	}
	g, err := h.engine.CreateGroup(ctx, q, req.GetGroup().GetDisplayName())
	if err != nil {
		return nil, err
	}
	return &dmsv1.CreateConsumerGroupResponse{Group: groupMessage(q, g, nil)}, nil
}

// GetConsumerGroup implements dms.v1.QueueService.
func (h *Handler) GetConsumerGroup(ctx context.Context, req *dmsv1.GetConsumerGroupRequest) (*dmsv1.GetConsumerGroupResponse, error) {
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	groups, err := h.groupsWithStats(ctx, q, []*metadatav1.GroupRecord{g})
	if err != nil {
		return nil, err
	}
	return &dmsv1.GetConsumerGroupResponse{Group: groups[0]}, nil
}

// ListConsumerGroups implements dms.v1.QueueService.
func (h *Handler) ListConsumerGroups(ctx context.Context, req *dmsv1.ListConsumerGroupsRequest) (*dmsv1.ListConsumerGroupsResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetParent())
	if err != nil {
		return nil, err
	}
	groups, err := h.groupsWithStats(ctx, q, h.cache.Groups(q.GetId()))
	if err != nil {
		return nil, err
	}
	return &dmsv1.ListConsumerGroupsResponse{Groups: groups}, nil
}

// DeleteConsumerGroup implements dms.v1.QueueService.
func (h *Handler) DeleteConsumerGroup(ctx context.Context, req *dmsv1.DeleteConsumerGroupRequest) (*dmsv1.DeleteConsumerGroupResponse, error) {
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &dmsv1.DeleteConsumerGroupResponse{}, h.engine.DeleteGroup(ctx, q, g)
}

// ListMembers implements dms.metadata.v1.MetadataService.
func (h *Handler) ListMembers(ctx context.Context, _ *metadatav1.ListMembersRequest) (*metadatav1.ListMembersResponse, error) {
	resp, err := h.cli.Get(ctx, catalog.MembersPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	out := &metadatav1.ListMembersResponse{}
	for _, kv := range resp.Kvs {
		m := &metadatav1.Member{}
		if proto.Unmarshal(kv.Value, m) == nil {
			out.Members = append(out.Members, m)
		}
	}
	return out, nil
}

// withCounts adds message and group counts, asking storage once for all
// partitions of all queues.
func (h *Handler) withCounts(ctx context.Context, queues []*metadatav1.QueueRecord) ([]*dmsv1.Queue, error) {
	var logs []string
	for _, q := range queues {
		for p := range q.GetPartitionCount() {
			logs = append(logs, catalog.PartitionLog(q.GetId(), p))
		}
	}
	counts := map[string]int64{}
	if len(logs) > 0 {
		info, err := h.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
		if err != nil {
			return nil, err
		}
		for _, li := range info.GetLogs() {
			_, queueID, _, _ := catalog.ParseLog(li.GetLog())
			counts[queueID] += li.GetNextOffset() - li.GetStartOffset()
		}
	}
	out := make([]*dmsv1.Queue, len(queues))
	for i, q := range queues {
		out[i] = queueMessage(q, counts[q.GetId()], int32(len(h.cache.Groups(q.GetId()))))
	}
	h.addSchedules(ctx, out)
	return out, nil
}

// addSchedules adds the scheduler's pending counts and next due times. The
// queue stays readable when the scheduler is not: the fields stay unset and
// the failure is logged.
func (h *Handler) addSchedules(ctx context.Context, queues []*dmsv1.Queue) {
	if len(queues) == 0 {
		return
	}
	ids := make([]string, len(queues))
	for i, q := range queues {
		ids[i] = q.GetId()
	}
	ctx, cancel := context.WithTimeout(ctx, scheduleStatsTimeout)
	defer cancel()
	resp, err := h.scheduler.GetQueueSchedules(ctx, &schedulerv1.GetQueueSchedulesRequest{QueueIds: ids})
	if err != nil {
		h.logger.Warn("queue stats without scheduled messages: the scheduler did not answer", "err", err)
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

func (h *Handler) groupsWithStats(ctx context.Context, q *metadatav1.QueueRecord, groups []*metadatav1.GroupRecord) ([]*dmsv1.ConsumerGroup, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = g.GetId()
	}
	stats, err := h.delivery.GetGroupStats(ctx, &deliveryv1.GetGroupStatsRequest{QueueId: q.GetId(), GroupIds: ids})
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
		MaxMessageBytes:   catalog.MaxMessageBytes,
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
