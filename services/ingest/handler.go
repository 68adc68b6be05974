package ingest

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
)

// Handler serves the public ProducerService and the internal IngestService.
type Handler struct {
	dmsv1.UnimplementedProducerServiceServer
	ingestv1.UnimplementedIngestServiceServer

	engine *Engine
	cache  *catalog.Cache
	// recordProducers stores who sent each batch, for message traces.
	recordProducers bool
	quotas          *quotas
}

var (
	_ dmsv1.ProducerServiceServer  = (*Handler)(nil)
	_ ingestv1.IngestServiceServer = (*Handler)(nil)
)

// NewHandler returns the gRPC handler of the ingest role.
func NewHandler(engine *Engine, cache *catalog.Cache) *Handler {
	return &Handler{engine: engine, cache: cache, recordProducers: true, quotas: newQuotas(cache, engine.storage, engine.now)}
}

// Quotas returns the quota check of this handler, for the front ends of
// the same process that store without it (Kafka's Produce).
func (h *Handler) Quotas() *Quotas { return h.quotas }

// Metadata an internal Publish carries from a protocol front end.
const (
	// frontEndHeader names the front end that took the messages ("amqp"),
	// for message traces.
	frontEndHeader = "dms-front-end"
	// producerHeader names who the front end took them from (a principal,
	// as authz.Principal.String gives it), for message traces. It is not
	// a principal assertion: the call is the cluster's own, not decided
	// for the user (the front end decided that); only nodes reach the
	// internal listener, and the REST gateway drops dms-* headers.
	producerHeader = "dms-producer"
	// systemMoveHeader marks a publish of messages the cluster moves
	// itself (AMQP dead-lettering): they were admitted when first sent, so
	// the project's send quotas do not apply again.
	systemMoveHeader = "dms-system-move"
)

type frontEndKey struct{}

type systemMoveKey struct{}

// fromFrontEnd is what FromFrontEnd records.
type fromFrontEnd struct{ name, producer string }

// FromFrontEnd returns ctx for an internal Publish of messages a protocol
// front end (name, "amqp") took from producer: the messages count against
// the project's quotas and traces name the front end and the producer.
// In-process calls read the context, calls over gRPC its metadata.
func FromFrontEnd(ctx context.Context, name string, producer authz.Principal) context.Context {
	ctx = context.WithValue(ctx, frontEndKey{}, fromFrontEnd{name, producer.String()})
	return metadata.AppendToOutgoingContext(ctx, frontEndHeader, name, producerHeader, producer.String())
}

// SystemMove returns ctx for an internal Publish of messages that were
// already admitted (a dead-lettered message): quotas do not apply.
func SystemMove(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, systemMoveKey{}, true)
	return metadata.AppendToOutgoingContext(ctx, systemMoveHeader, "1")
}

// frontEndOf returns the front end an internal Publish names and who it
// took the messages from, or "".
func frontEndOf(ctx context.Context) (name, producer string) {
	if f, ok := ctx.Value(frontEndKey{}).(fromFrontEnd); ok {
		return f.name, f.producer
	}
	names, producers := metadata.ValueFromIncomingContext(ctx, frontEndHeader), metadata.ValueFromIncomingContext(ctx, producerHeader)
	if len(names) == 1 && len(producers) == 1 {
		return names[0], producers[0]
	}
	return "", ""
}

func isSystemMove(ctx context.Context) bool {
	if _, ok := ctx.Value(systemMoveKey{}).(bool); ok {
		return true
	}
	return len(metadata.ValueFromIncomingContext(ctx, systemMoveHeader)) > 0
}

// RecordProducers turns the recording of producers for message traces on
// or off (on by default).
func (h *Handler) RecordProducers(on bool) { h.recordProducers = on }

// producer says who sends through a call, when producers are recorded.
// public is false for the internal Publish (a protocol front end, or the
// scheduler releasing scheduled messages, which keep their ids).
func (h *Handler) producer(ctx context.Context, public, released bool) *storagev1.ProducerInfo {
	if !h.recordProducers {
		return nil
	}
	p := authz.FromContext(ctx)
	info := &storagev1.ProducerInfo{Principal: p.String(), FrontEnd: "internal"}
	switch {
	case released:
		info.FrontEnd = "scheduler"
	case !public:
		if name, producer := frontEndOf(ctx); name != "" {
			info.FrontEnd, info.Principal = name, producer
		}
	case public:
		info.FrontEnd = "grpc"
		if p.Kind == authz.System {
			// No principal on a public call: authentication is off.
			info.Principal = authz.AnonymousPrincipal.String()
		}
		// grpc-gateway passes the HTTP request's host on.
		if len(metadata.ValueFromIncomingContext(ctx, "x-forwarded-host")) > 0 {
			info.FrontEnd = "rest"
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		info.Traceparent = "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
	}
	return info
}

// SendMessages implements dms.v1.ProducerService.
func (h *Handler) SendMessages(ctx context.Context, req *dmsv1.SendMessagesRequest) (*dmsv1.SendMessagesResponse, error) {
	q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
	if err != nil {
		return nil, err
	}
	if err := h.quotas.admit(ctx, q.GetProject(), req.GetMessages()); err != nil {
		return nil, err
	}
	results, err := h.engine.PublishFrom(ctx, q, req.GetMessages(), nil, req.GetIdempotenceKey(), h.producer(ctx, true, false))
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
	released := len(req.GetMessageIds()) > 0
	// Released scheduled messages were admitted when they were sent, and
	// system moves (dead-lettering) when they were first published; what
	// a front end publishes counts against its project's quotas, as a
	// native send does.
	if !released && !isSystemMove(ctx) {
		if err := h.quotas.admit(ctx, q.GetProject(), req.GetMessages()); err != nil {
			return nil, err
		}
	}
	results, err := h.engine.PublishFrom(ctx, q, req.GetMessages(), req.GetMessageIds(), req.GetIdempotenceKey(), h.producer(ctx, false, released))
	if err != nil {
		return nil, err
	}
	return &ingestv1.PublishResponse{Results: results}, nil
}
