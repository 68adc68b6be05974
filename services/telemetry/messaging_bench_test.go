package telemetry_test

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/telemetry"
)

// BenchmarkMessagingCounters is what the domain counters cost a batch: one
// produced count (storage, per append) and one group count (delivery, per
// state write), with queue labels.
func BenchmarkMessagingCounters(b *testing.B) {
	m, err := telemetry.NewMessaging(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), true)
	if err != nil {
		b.Fatal(err)
	}
	q := &metadatav1.QueueRecord{Id: "5b0f6a4e-8f7c-4d1e-9a3b-2c1d0e9f8a7b", Project: "0123456789abcdef0123456789abcdef", DisplayName: "orders"}
	g := &metadatav1.GroupRecord{Id: "g-1", DisplayName: "billing"}
	b.ReportAllocs()
	for b.Loop() {
		m.Produced(q, 100)
		m.GroupCounts(q, g, telemetry.GroupCounts{Delivered: 100})
		m.GroupCounts(q, g, telemetry.GroupCounts{Acked: 100})
	}
}
