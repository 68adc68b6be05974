package scheduler

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/opendms/dms/services/telemetry"
)

// RegisterMetrics publishes dms.messaging.scheduled: the scheduled messages
// not released yet, per queue (or summed when m has no queue labels), of
// the timer shards this node owns and has loaded.
func (e *Engine) RegisterMetrics(mp metric.MeterProvider, m *telemetry.Messaging) error {
	meter := mp.Meter("github.com/opendms/dms/services/scheduler")
	gauge, err := meter.Int64ObservableGauge("dms.messaging.scheduled", metric.WithUnit("{message}"),
		metric.WithDescription("Messages sent with a delay or a deliver time and not released to their queue yet."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		e.mu.Lock()
		owners := append([]*shard(nil), e.owners...)
		e.mu.Unlock()
		sums := map[attribute.Distinct]int64{}
		sets := map[attribute.Distinct]attribute.Set{}
		add := func(set attribute.Set, n int64) {
			sums[set.Equivalent()] += n
			sets[set.Equivalent()] = set
		}
		add(telemetry.NodeAttributes(), 0)
		for _, sh := range owners {
			if sh == nil {
				continue
			}
			select {
			case <-sh.ready:
			default:
				continue // still replaying its buckets
			}
			sh.mu.Lock()
			pending := map[string]int64{}
			for id, qt := range sh.queues {
				for _, b := range qt.buckets {
					pending[id] += b.pending
				}
			}
			sh.mu.Unlock()
			for id, n := range pending {
				set := telemetry.NodeAttributes()
				if m.QueueLabels() {
					q, ok := e.cache.CachedQueue(id)
					if !ok {
						continue
					}
					set = telemetry.QueueAttributes(q, nil)
				}
				add(set, n)
			}
		}
		for k, n := range sums {
			o.ObserveInt64(gauge, n, metric.WithAttributeSet(sets[k]))
		}
		return nil
	}, gauge)
	return err
}
