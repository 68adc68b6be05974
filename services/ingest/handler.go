package ingest

import (
	"context"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

// Handler serves the public ProducerService and the internal IngestService.
type Handler struct {
	dmsv1.UnimplementedProducerServiceServer
	ingestv1.UnimplementedIngestServiceServer

	engine *Engine
	cache  *catalog.Cache
}

var (
	_ dmsv1.ProducerServiceServer  = (*Handler)(nil)
	_ ingestv1.IngestServiceServer = (*Handler)(nil)
)

// NewHandler returns the gRPC handler of the ingest role.
func NewHandler(engine *Engine, cache *catalog.Cache) *Handler {
	return &Handler{engine: engine, cache: cache}
}

// SendMessages implements dms.v1.ProducerService.
func (h *Handler) SendMessages(ctx context.Context, req *dmsv1.SendMessagesRequest) (*dmsv1.SendMessagesResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	results, err := h.engine.Publish(ctx, q, req.GetMessages(), nil, req.GetIdempotenceKey())
	if err != nil {
		return nil, err
	}
	return &dmsv1.SendMessagesResponse{Results: results}, nil
}

// CancelScheduledMessages implements dms.v1.ProducerService.
func (h *Handler) CancelScheduledMessages(ctx context.Context, req *dmsv1.CancelScheduledMessagesRequest) (*dmsv1.CancelScheduledMessagesResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	results, err := h.engine.CancelScheduled(ctx, q, req.GetScheduleIds())
	if err != nil {
		return nil, err
	}
	return &dmsv1.CancelScheduledMessagesResponse{Results: results}, nil
}

// RescheduleMessage implements dms.v1.ProducerService.
func (h *Handler) RescheduleMessage(ctx context.Context, req *dmsv1.RescheduleMessageRequest) (*dmsv1.RescheduleMessageResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	return h.engine.Reschedule(ctx, q, req.GetScheduleId(), req.GetDelay(), req.GetDeliverTime())
}

// Publish implements dms.cluster.ingest.v1.IngestService.
func (h *Handler) Publish(ctx context.Context, req *ingestv1.PublishRequest) (*ingestv1.PublishResponse, error) {
	q, err := h.cache.QueueByID(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	results, err := h.engine.Publish(ctx, q, req.GetMessages(), req.GetMessageIds(), req.GetIdempotenceKey())
	if err != nil {
		return nil, err
	}
	return &ingestv1.PublishResponse{Results: results}, nil
}
