package scheduler

import (
	"context"

	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
)

// Handler serves the internal SchedulerService over the engine.
type Handler struct {
	schedulerv1.UnimplementedSchedulerServiceServer
	engine *Engine
}

var _ schedulerv1.SchedulerServiceServer = (*Handler)(nil)

// NewHandler returns the gRPC handler of the scheduler role.
func NewHandler(engine *Engine) *Handler { return &Handler{engine: engine} }

// GetStatus implements dms.cluster.scheduler.v1.SchedulerService.
func (h *Handler) GetStatus(context.Context, *schedulerv1.GetStatusRequest) (*schedulerv1.GetStatusResponse, error) {
	return &schedulerv1.GetStatusResponse{Shards: h.engine.Status()}, nil
}

// Schedule implements dms.cluster.scheduler.v1.SchedulerService.
func (h *Handler) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	ids, messageIDs, err := h.engine.Schedule(ctx, req.GetQueueId(), req.GetEntries(), req.GetIdempotenceKey())
	if err != nil {
		return nil, err
	}
	return &schedulerv1.ScheduleResponse{ScheduleIds: ids, MessageIds: messageIDs}, nil
}

// Cancel implements dms.cluster.scheduler.v1.SchedulerService.
func (h *Handler) Cancel(ctx context.Context, req *schedulerv1.CancelRequest) (*schedulerv1.CancelResponse, error) {
	results, err := h.engine.Cancel(ctx, req.GetQueueId(), req.GetScheduleIds())
	if err != nil {
		return nil, err
	}
	return &schedulerv1.CancelResponse{Results: results}, nil
}

// Reschedule implements dms.cluster.scheduler.v1.SchedulerService.
func (h *Handler) Reschedule(ctx context.Context, req *schedulerv1.RescheduleRequest) (*schedulerv1.RescheduleResponse, error) {
	id, messageID, err := h.engine.Reschedule(ctx, req.GetQueueId(), req.GetScheduleId(), req.GetDueMs())
	if err != nil {
		return nil, err
	}
	return &schedulerv1.RescheduleResponse{ScheduleId: id, MessageId: messageID}, nil
}

// GetQueueSchedules implements dms.cluster.scheduler.v1.SchedulerService.
func (h *Handler) GetQueueSchedules(ctx context.Context, req *schedulerv1.GetQueueSchedulesRequest) (*schedulerv1.GetQueueSchedulesResponse, error) {
	sums, err := h.engine.QueueSchedules(ctx, req.GetQueueIds())
	if err != nil {
		return nil, err
	}
	out := &schedulerv1.GetQueueSchedulesResponse{Queues: make([]*schedulerv1.QueueSchedules, len(sums))}
	for i, s := range sums {
		out.Queues[i] = &schedulerv1.QueueSchedules{QueueId: req.GetQueueIds()[i], PendingCount: s.Pending, NextDueMs: s.NextDueMs}
	}
	return out, nil
}
