package metadata

import (
	"context"
	"strconv"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Handler serves the public QueueService and the cluster's MetadataService:
// it resolves names, and leaves changes to the engine and the assembling of
// what a client sees of queues and groups to the views.
type Handler struct {
	dmsv1.UnimplementedQueueServiceServer
	metadatav1.UnimplementedMetadataServiceServer

	engine *Engine
	views  *Views
	cache  *catalog.Cache
}

var (
	_ dmsv1.QueueServiceServer         = (*Handler)(nil)
	_ metadatav1.MetadataServiceServer = (*Handler)(nil)
)

// NewHandler returns the gRPC handler of the metadata role.
func NewHandler(engine *Engine, views *Views, cache *catalog.Cache) *Handler {
	return &Handler{engine: engine, views: views, cache: cache}
}

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
		ReplicationFactor: q.GetReplicationFactor(),
		Labels:            q.GetLabels(),
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
	queues, err := h.views.Queues(ctx, []*metadatav1.QueueRecord{q})
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
	if req.GetPageSize() < 0 {
		return nil, errs.Wrapf(errs.ErrPageSizeInvalid, "page_size must be 0 (all) or more, got %d", req.GetPageSize())
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
	page, err := h.views.Queues(ctx, all[start:end])
	if err != nil {
		return nil, err
	}
	resp := &dmsv1.ListQueuesResponse{Queues: page, TotalSize: int32(len(all))}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// UpdateQueue implements dms.v1.QueueService.
func (h *Handler) UpdateQueue(ctx context.Context, req *dmsv1.UpdateQueueRequest) (*dmsv1.UpdateQueueResponse, error) {
	name := req.GetName()
	if name == "" {
		name = req.GetQueue().GetName()
	}
	q, err := h.cache.ResolveQueueName(ctx, name)
	if err != nil {
		return nil, err
	}
	if other := req.GetQueue().GetName(); other != "" && other != name {
		if oq, err := h.cache.ResolveQueueName(ctx, other); err != nil || oq.GetId() != q.GetId() {
			return nil, errs.Wrapf(errs.ErrRequestInvalid, "queue.name %q is not the queue named by name %q", other, name)
		}
	}
	var u QueueUpdate
	in := req.GetQueue()
	for _, path := range req.GetUpdateMask().GetPaths() {
		switch path {
		case "description":
			u.Description = &in.Description
		case "retention":
			d := in.GetRetention().AsDuration()
			u.Retention = &d
		case "dead_letter_enabled", "deadLetterEnabled":
			u.DeadLetterEnabled = &in.DeadLetterEnabled
		case "max_consume_count", "maxConsumeCount":
			u.MaxConsumeCount = &in.MaxConsumeCount
		default:
			return nil, errs.Wrapf(errs.ErrRequestInvalid, "update_mask names %q: only description, retention, dead_letter_enabled and max_consume_count can change", path)
		}
	}
	rec, err := h.engine.UpdateQueue(ctx, q, u)
	if err != nil {
		return nil, err
	}
	queues, err := h.views.Queues(ctx, []*metadatav1.QueueRecord{rec})
	if err != nil {
		return nil, err
	}
	return &dmsv1.UpdateQueueResponse{Queue: queues[0]}, nil
}

// BrowseMessages implements dms.v1.QueueService.
func (h *Handler) BrowseMessages(ctx context.Context, req *dmsv1.BrowseMessagesRequest) (*dmsv1.BrowseMessagesResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	return h.views.Browse(ctx, q, req)
}

// DeleteQueue implements dms.v1.QueueService.
func (h *Handler) DeleteQueue(ctx context.Context, req *dmsv1.DeleteQueueRequest) (*dmsv1.DeleteQueueResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &dmsv1.DeleteQueueResponse{}, h.engine.DeleteQueue(ctx, q)
}

// AddPartitions implements dms.v1.QueueService.
func (h *Handler) AddPartitions(ctx context.Context, req *dmsv1.AddPartitionsRequest) (*dmsv1.AddPartitionsResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	rec, err := h.engine.AddPartitions(ctx, q, req.GetPartitionCount())
	if err != nil {
		return nil, err
	}
	queues, err := h.views.Queues(ctx, []*metadatav1.QueueRecord{rec})
	if err != nil {
		return nil, err
	}
	return &dmsv1.AddPartitionsResponse{Queue: queues[0]}, nil
}

// UpdateQueueLabels implements dms.v1.QueueService.
func (h *Handler) UpdateQueueLabels(ctx context.Context, req *dmsv1.UpdateQueueLabelsRequest) (*dmsv1.UpdateQueueLabelsResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	rec, err := h.engine.UpdateLabels(ctx, q, req.GetSet(), req.GetRemove(), req.GetAllowMissing())
	if err != nil {
		return nil, err
	}
	queues, err := h.views.Queues(ctx, []*metadatav1.QueueRecord{rec})
	if err != nil {
		return nil, err
	}
	return &dmsv1.UpdateQueueLabelsResponse{Queue: queues[0]}, nil
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
	groups, err := h.views.Groups(ctx, q, []*metadatav1.GroupRecord{g})
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
	groups, err := h.views.Groups(ctx, q, h.cache.Groups(q.GetId()))
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

// GetProjectQuotas implements dms.v1.QueueService.
func (h *Handler) GetProjectQuotas(ctx context.Context, req *dmsv1.GetProjectQuotasRequest) (*dmsv1.GetProjectQuotasResponse, error) {
	project, err := catalog.ParseProject(req.GetName())
	if err != nil {
		return nil, err
	}
	quotas, set := h.engine.EffectiveQuotas(project)
	used, err := h.engine.QueuesUsed(ctx, project)
	if err != nil {
		return nil, err
	}
	return &dmsv1.GetProjectQuotasResponse{Quotas: quotas, ProjectSet: set, QueuesUsed: used}, nil
}

// UpdateProjectQuotas implements dms.v1.QueueService.
func (h *Handler) UpdateProjectQuotas(ctx context.Context, req *dmsv1.UpdateProjectQuotasRequest) (*dmsv1.UpdateProjectQuotasResponse, error) {
	project, err := catalog.ParseProject(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := h.engine.SetProjectQuotas(ctx, project, req.GetQuotas()); err != nil {
		return nil, err
	}
	quotas, _ := h.engine.EffectiveQuotas(project)
	return &dmsv1.UpdateProjectQuotasResponse{Quotas: quotas}, nil
}

// DescribePlacement implements dms.cluster.metadata.v1.MetadataService.
func (h *Handler) DescribePlacement(ctx context.Context, req *metadatav1.DescribePlacementRequest) (*metadatav1.DescribePlacementResponse, error) {
	return &metadatav1.DescribePlacementResponse{Units: h.engine.DescribePlacement(req.GetQueueId()), Cluster: h.engine.placement.Info(), Controller: h.engine.ControllerNode(ctx)}, nil
}

// ElectLeader implements dms.cluster.metadata.v1.MetadataService.
func (h *Handler) ElectLeader(ctx context.Context, req *metadatav1.ElectLeaderRequest) (*metadatav1.ElectLeaderResponse, error) {
	st, discarded, err := h.engine.ElectLeader(ctx, req.GetUnit(), req.GetNode(), req.GetUnclean())
	if err != nil {
		return nil, err
	}
	return &metadatav1.ElectLeaderResponse{State: st, Discarded: discarded}, nil
}

// ReassignReplicas implements dms.cluster.metadata.v1.MetadataService.
func (h *Handler) ReassignReplicas(ctx context.Context, req *metadatav1.ReassignReplicasRequest) (*metadatav1.ReassignReplicasResponse, error) {
	st, err := h.engine.ReassignReplicas(ctx, req.GetUnit(), req.GetReplicas())
	if err != nil {
		return nil, err
	}
	return &metadatav1.ReassignReplicasResponse{State: st}, nil
}

// ListMembers implements dms.cluster.metadata.v1.MetadataService.
func (h *Handler) ListMembers(ctx context.Context, _ *metadatav1.ListMembersRequest) (*metadatav1.ListMembersResponse, error) {
	members, err := h.engine.Members(ctx)
	if err != nil {
		return nil, err
	}
	return &metadatav1.ListMembersResponse{Members: members}, nil
}
