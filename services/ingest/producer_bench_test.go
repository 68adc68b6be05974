package ingest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/authz"
)

// BenchmarkProducerInfo is what recording the producer costs a send call
// (once per call, whatever its number of messages): reading the principal,
// the metadata and the trace context, and the bytes it adds to the batch.
func BenchmarkProducerInfo(b *testing.B) {
	h := &Handler{recordProducers: true}
	ctx := authz.WithPrincipal(context.Background(), authz.Principal{Kind: authz.User, UserID: "7f3c0e1e-3a9a-4c55-9a55-0d8c9f6c1b2a"})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-forwarded-host", "localhost:8080"))
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	var size int
	b.ReportAllocs()
	for b.Loop() {
		info := h.producer(ctx, true, false)
		size = proto.Size(&storagev1.Record{Producer: info})
	}
	b.ReportMetric(float64(size), "bytes/batch")
}
