package msgtrace

import (
	"context"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Handler serves the public MessageTraceService.
type Handler struct {
	dmsv1.UnimplementedMessageTraceServiceServer

	engine *Engine
}

var _ dmsv1.MessageTraceServiceServer = (*Handler)(nil)

// NewHandler returns the gRPC handler of message traces.
func NewHandler(engine *Engine) *Handler { return &Handler{engine: engine} }

// GetMessageTrace implements dms.v1.MessageTraceService.
func (h *Handler) GetMessageTrace(ctx context.Context, req *dmsv1.GetMessageTraceRequest) (*dmsv1.GetMessageTraceResponse, error) {
	return h.engine.Trace(ctx, req)
}
