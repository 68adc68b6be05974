package rpcstatus_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// TestLocalCallsAreTracedWhenTheCallerIs: an in-process call under a
// recorded span gets a child span named like a gRPC method, with the error
// status; without a recorded span it makes none.
func TestLocalCallsAreTracedWhenTheCallerIs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "SendMessages")
	var seen trace.SpanContext
	_, err := rpcstatus.Local(ctx, &storagev1.AppendRequest{}, func(ctx context.Context, _ *storagev1.AppendRequest) (*storagev1.AppendResponse, error) {
		seen = trace.SpanContextFromContext(ctx)
		return nil, errs.Wrapf(errs.ErrNotLeader, "moved")
	})
	require.Error(t, err)
	parent.End()
	spans := rec.Ended()
	require.Len(t, spans, 2)
	local := spans[0]
	require.Equal(t, "dms.cluster.storage.v1/Append", local.Name())
	require.Equal(t, parent.SpanContext().SpanID(), local.Parent().SpanID())
	require.Equal(t, local.SpanContext().SpanID(), seen.SpanID(), "the handler runs in the call's span")
	require.Equal(t, otelcodes.Error, local.Status().Code)

	_, err = rpcstatus.Local(context.Background(), &storagev1.ReadRequest{}, func(context.Context, *storagev1.ReadRequest) (*storagev1.ReadResponse, error) {
		return &storagev1.ReadResponse{}, nil
	})
	require.NoError(t, err)
	require.Len(t, rec.Ended(), 2, "no span without a recorded caller")
}
