package delivery

import (
	"context"
	"time"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/delivery/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Defaults and ranges of receive parameters (the DMS ones: ack_wait 15 to
// 300 s, default 30 s; time_wait up to 60 s).
const (
	DefaultMaxMessages = 10
	DefaultVisibility  = 30 * time.Second
	MinVisibility      = 15 * time.Second
	MaxVisibility      = 300 * time.Second
	MaxWaitTime        = 60 * time.Second
	MaxAcksPerRequest  = 1000
)

// Handler serves the public ConsumerService and the internal DeliveryService.
type Handler struct {
	dmsv1.UnimplementedConsumerServiceServer
	deliveryv1.UnimplementedDeliveryServiceServer

	engine *Engine
	cache  *catalog.Cache
}

// NewHandler returns the gRPC handler of the delivery role.
func NewHandler(engine *Engine, cache *catalog.Cache) *Handler {
	return &Handler{engine: engine, cache: cache}
}

// ReceiveMessages implements dms.v1.ConsumerService.
func (h *Handler) ReceiveMessages(ctx context.Context, req *dmsv1.ReceiveMessagesRequest) (*dmsv1.ReceiveMessagesResponse, error) {
	opts, err := receiveOptions(req)
	if err != nil {
		return nil, err
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	msgs, err := h.engine.Receive(ctx, q, g, opts)
	if err != nil {
		return nil, err
	}
	return &dmsv1.ReceiveMessagesResponse{Messages: msgs}, nil
}

func receiveOptions(req *dmsv1.ReceiveMessagesRequest) (ReceiveOptions, error) {
	opts := ReceiveOptions{MaxMessages: int(req.GetMaxMessages()), WaitTime: req.GetWaitTime().AsDuration(), Visibility: req.GetVisibilityTimeout().AsDuration()}
	if opts.MaxMessages == 0 {
		opts.MaxMessages = DefaultMaxMessages
	}
	if opts.MaxMessages < 1 || opts.MaxMessages > MaxReceiveMessages {
		return opts, errs.Wrapf(errs.ErrMaxMessagesInvalid, "max_messages must be 1 to %d, got %d", MaxReceiveMessages, opts.MaxMessages)
	}
	if opts.WaitTime < 0 || opts.WaitTime > MaxWaitTime {
		return opts, errs.Wrapf(errs.ErrWaitTimeInvalid, "wait_time must be 0 to %s, got %s", MaxWaitTime, opts.WaitTime)
	}
	if req.GetVisibilityTimeout() == nil {
		opts.Visibility = DefaultVisibility
	}
	if opts.Visibility < MinVisibility || opts.Visibility > MaxVisibility {
		return opts, errs.Wrapf(errs.ErrVisibilityTimeoutInvalid, "visibility_timeout must be %s to %s, got %s", MinVisibility, MaxVisibility, opts.Visibility)
	}
	return opts, nil
}

// AckMessages implements dms.v1.ConsumerService.
func (h *Handler) AckMessages(ctx context.Context, req *dmsv1.AckMessagesRequest) (*dmsv1.AckMessagesResponse, error) {
	if n := len(req.GetAcks()); n == 0 || n > MaxAcksPerRequest {
		return nil, errs.Wrapf(errs.ErrBatchTooLarge, "an ack request settles 1 to %d deliveries, got %d", MaxAcksPerRequest, n)
	}
	q, g, err := h.cache.ResolveGroupName(ctx, req.GetGroup())
	if err != nil {
		return nil, err
	}
	acks := make([]AckRequest, len(req.GetAcks()))
	for i, a := range req.GetAcks() {
		acks[i] = AckRequest{Handle: a.GetReceiptHandle(), Status: a.GetStatus()}
	}
	results, err := h.engine.Ack(ctx, q, g, acks, req.GetStopAtFirstFailure())
	if err != nil {
		return nil, err
	}
	return &dmsv1.AckMessagesResponse{Results: results}, nil
}

// GetGroupStats implements dms.delivery.v1.DeliveryService.
func (h *Handler) GetGroupStats(ctx context.Context, req *deliveryv1.GetGroupStatsRequest) (*deliveryv1.GetGroupStatsResponse, error) {
	q, err := h.cache.QueueByID(ctx, req.GetQueueId())
	if err != nil {
		return nil, err
	}
	out := &deliveryv1.GetGroupStatsResponse{}
	for _, id := range req.GetGroupIds() {
		g, err := h.cache.ResolveGroup(ctx, q, id)
		if err != nil {
			return nil, err
		}
		s, err := h.engine.Stats(ctx, q, g)
		if err != nil {
			return nil, err
		}
		out.Stats = append(out.Stats, s)
	}
	return out, nil
}
