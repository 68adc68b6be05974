package delivery

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/telemetry"
)

// SetMetrics makes the engine count deliveries, acks, failures, dead
// letters and redrives per group (telemetry.Messaging), and publishes per
// group, for the groups this node serves: the backlog, the lag, the
// messages in flight and the age of the oldest unacknowledged message.
func (e *Engine) SetMetrics(m *telemetry.Messaging, mp metric.MeterProvider) error {
	e.metrics = m
	meter := mp.Meter("github.com/opendms/dms/services/delivery")
	backlog, err := meter.Int64ObservableGauge("dms.messaging.backlog", metric.WithUnit("{message}"),
		metric.WithDescription("Messages of a group's queue that the group has not settled yet (available, in flight or waiting for a retry)."))
	if err != nil {
		return err
	}
	lag, err := meter.Int64ObservableGauge("dms.messaging.lag", metric.WithUnit("{message}"),
		metric.WithDescription("Offsets from a group's oldest unsettled message to the end of each partition, summed (Kafka's consumer lag)."))
	if err != nil {
		return err
	}
	inflight, err := meter.Int64ObservableGauge("dms.messaging.in_flight", metric.WithUnit("{message}"),
		metric.WithDescription("Messages delivered to a group and not settled, their visibility timeout running."))
	if err != nil {
		return err
	}
	oldest, err := meter.Float64ObservableGauge("dms.messaging.oldest_unacked.age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest message a group has not settled (0 when none)."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		for _, s := range e.groupGauges(ctx) {
			opt := metric.WithAttributeSet(s.attrs)
			o.ObserveInt64(backlog, s.backlog, opt)
			o.ObserveInt64(lag, s.lag, opt)
			o.ObserveInt64(inflight, s.inflight, opt)
			o.ObserveFloat64(oldest, s.oldestAge, opt)
		}
		return nil
	}, backlog, lag, inflight, oldest)
	return err
}

type groupGauge struct {
	attrs                  attribute.Set
	backlog, lag, inflight int64
	oldestAge              float64
}

// scrapeTimeout bounds what a scrape waits for storage.
const scrapeTimeout = 5 * time.Second

// groupGauges computes the gauges of the groups loaded here, from memory
// and one GetLogInfo per group; without queue labels they are summed (the
// oldest age is the largest).
func (e *Engine) groupGauges(ctx context.Context) []groupGauge {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	e.mu.Lock()
	loaded := make([]*consumption, 0, len(e.consumptions))
	for _, c := range e.consumptions {
		if c.kind == kindMessages {
			loaded = append(loaded, c)
		}
	}
	e.mu.Unlock()
	byAttrs := map[attribute.Distinct]*groupGauge{}
	var out []*groupGauge
	now := e.now()
	for _, c := range loaded {
		if _, _, mine := e.own.DeliveryOwner(c.queue.GetId()); !mine {
			continue
		}
		info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
		if err != nil || len(info.GetLogs()) != len(c.logs) {
			continue
		}
		var (
			backlog, lag, inflight int64
			firsts                 = make([]int64, len(c.logs))
		)
		c.mu.Lock()
		if !c.loaded || len(c.parts) != len(c.logs) {
			c.mu.Unlock()
			continue
		}
		for i, li := range info.GetLogs() {
			p := c.parts[i]
			start, next := li.GetStartOffset(), li.GetNextOffset()
			settled := max(0, min(p.ackFloor, next)-start) - int64(len(p.redriven)) + p.acked.countIn(start, next)
			backlog += max(0, next-start-settled)
			lag += max(0, next-max(p.ackFloor, start))
			inflight += int64(len(p.inflight))
			firsts[i] = -1
			if p.ackFloor < next {
				firsts[i] = max(p.ackFloor, start)
			}
		}
		c.mu.Unlock()
		var oldestMs int64
		for i, o := range firsts {
			if o < 0 {
				continue
			}
			if r, err := e.readOne(ctx, c.logs[i], o); err == nil && r != nil {
				if ts := r.GetRecord().GetTimestampMs(); oldestMs == 0 || ts < oldestMs {
					oldestMs = ts
				}
			}
		}
		var age float64
		if oldestMs > 0 {
			age = max(0, now.Sub(time.UnixMilli(oldestMs)).Seconds())
		}
		attrs := telemetry.NodeAttributes()
		if e.metrics.QueueLabels() {
			attrs = telemetry.QueueAttributes(c.queue, c.group)
		}
		g := byAttrs[attrs.Equivalent()]
		if g == nil {
			g = &groupGauge{attrs: attrs}
			byAttrs[attrs.Equivalent()] = g
			out = append(out, g)
		}
		g.backlog += backlog
		g.lag += lag
		g.inflight += inflight
		g.oldestAge = max(g.oldestAge, age)
	}
	res := make([]groupGauge, len(out))
	for i, g := range out {
		res[i] = *g
	}
	return res
}

// countBatch counts what a state write changes for a group.
func (e *Engine) countBatch(c *consumption, batch *stateBatch) {
	var n telemetry.GroupCounts
	for _, r := range batch.records {
		n.Delivered += len(r.GetDeliveredOffsets())
		n.Acked += len(r.GetAckedOffsets())
		n.DeadLettered += len(r.GetDeadLetteredOffsets())
		n.Redriven += len(r.GetRedrivenOffsets())
	}
	e.metrics.GroupCounts(c.queue, c.group, n)
}
