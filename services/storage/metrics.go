package storage

import (
	"context"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
	"github.com/opendms/dms/services/telemetry"
)

// damageCounters count, per log kind, what this node found damaged and what
// it repaired from replicas since it started, for /metrics: damage must be
// reported loudly, not only in the log.
type damageCounters struct {
	mu     sync.Mutex
	byKind map[storagev1.LogKind]*damageCount
}

type damageCount struct {
	ranges, offsets, quarantined, torn int64 // found
	repairedRanges, repairedOffsets    int64 // fetched again from a replica
}

func (d *damageCounters) get(id logid.ID) *damageCount {
	if d.byKind == nil {
		d.byKind = map[storagev1.LogKind]*damageCount{}
	}
	c := d.byKind[id.GetKind()]
	if c == nil {
		c = &damageCount{}
		d.byKind[id.GetKind()] = c
	}
	return c
}

// found counts one damaged range a log quarantined (OnDamage).
func (d *damageCounters) found(id logid.ID, r partitionlog.Repair) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.get(id)
	c.quarantined += r.Bytes
	if r.Torn {
		c.torn += r.Bytes
		return
	}
	c.ranges++
	c.offsets += r.To - r.From + 1
}

// repaired counts a lost range fetched again from a replica.
func (d *damageCounters) repaired(id logid.ID, offsets int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.get(id)
	c.repairedRanges++
	c.repairedOffsets += offsets
}

// RegisterMetrics publishes the engine's damage counters through mp:
// dms_storage_damaged_ranges_total, dms_storage_damaged_offsets_total,
// dms_storage_quarantined_bytes_total, dms_storage_torn_tail_bytes_total,
// dms_storage_repaired_ranges_total and dms_storage_repaired_offsets_total,
// each by log kind (queue_partition, group_state, ...).
//
// It also records the latency histograms dms.storage.append.duration,
// dms.storage.fsync.duration and dms.storage.replication.duration (by log
// kind), the gauges dms.storage.under_replicated_partitions,
// dms.storage.offline_partitions and dms.storage.filesystem.{size,available},
// and counts the messages stored into produced (nil: not counted).
func (e *Engine) RegisterMetrics(mp metric.MeterProvider, produced *telemetry.Messaging) error {
	if err := e.registerDomainMetrics(mp, produced); err != nil {
		return err
	}
	m := mp.Meter("github.com/opendms/dms/services/storage")
	type counter struct {
		name, desc, unit string
		value            func(*damageCount) int64
		inst             metric.Int64ObservableCounter
	}
	counters := []*counter{
		{name: "dms.storage.damaged_ranges", desc: "Damaged ranges found in logs (at open, by readers, by the scrubber), quarantined and marked lost.", unit: "{range}", value: func(c *damageCount) int64 { return c.ranges }},
		{name: "dms.storage.damaged_offsets", desc: "Offsets the damaged ranges held.", unit: "{offset}", value: func(c *damageCount) int64 { return c.offsets }},
		{name: "dms.storage.quarantined_bytes", desc: "Bytes copied to quarantine files (damaged ranges and torn tails).", unit: "By", value: func(c *damageCount) int64 { return c.quarantined }},
		{name: "dms.storage.torn_tail_bytes", desc: "Bytes of torn tails (interrupted, never acknowledged writes) cut off at open.", unit: "By", value: func(c *damageCount) int64 { return c.torn }},
		{name: "dms.storage.repaired_ranges", desc: "Lost ranges of this node's copies fetched again from an in-sync replica.", unit: "{range}", value: func(c *damageCount) int64 { return c.repairedRanges }},
		{name: "dms.storage.repaired_offsets", desc: "Offsets of the repaired ranges.", unit: "{offset}", value: func(c *damageCount) int64 { return c.repairedOffsets }},
	}
	var insts []metric.Observable
	for _, c := range counters {
		inst, err := m.Int64ObservableCounter(c.name, metric.WithDescription(c.desc), metric.WithUnit(c.unit))
		if err != nil {
			return err
		}
		c.inst = inst
		insts = append(insts, inst)
	}
	d := &e.repairs.counts
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.byKind[storagev1.LogKind_LOG_KIND_QUEUE_PARTITION] == nil {
			// A zero series from the start, so that an alert on the
			// counters' increase sees the first damage.
			attrs := metric.WithAttributes(attribute.String("kind", kindName(storagev1.LogKind_LOG_KIND_QUEUE_PARTITION)))
			for _, c := range counters {
				o.ObserveInt64(c.inst, 0, attrs)
			}
		}
		for kind, dc := range d.byKind {
			attrs := metric.WithAttributes(attribute.String("kind", kindName(kind)))
			for _, c := range counters {
				o.ObserveInt64(c.inst, c.value(dc), attrs)
			}
		}
		return nil
	}, insts...)
	return err
}

// kindName is a log kind as a metric label: LOG_KIND_QUEUE_PARTITION →
// queue_partition.
func kindName(k storagev1.LogKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "LOG_KIND_"))
}
