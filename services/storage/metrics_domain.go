package storage

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/telemetry"
)

// latencyBuckets are the histogram bounds in seconds: an fsync on a good
// SSD takes ~0.1-2 ms, a replicated append a few ms, a stalled disk
// seconds.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyMetrics records appends, fsyncs and replication waits, and counts
// the messages stored. It exists from NewEngine on (logs opened before
// RegisterMetrics keep it) and records once RegisterMetrics set its
// instruments.
type latencyMetrics struct {
	inst atomic.Pointer[latencyInstruments]
}

type latencyInstruments struct {
	append, fsync, replication metric.Float64Histogram
	byKind                     []metric.RecordOption // by LogKind
	messaging                  *telemetry.Messaging
	cache                      *catalog.Cache
}

func (l *latencyMetrics) kindOpt(in *latencyInstruments, id logid.ID) metric.RecordOption {
	if k := int(id.GetKind()); k >= 0 && k < len(in.byKind) {
		return in.byKind[k]
	}
	return in.byKind[0]
}

// syncObserver returns the OnSync hook of a log.
func (l *latencyMetrics) syncObserver(id logid.ID) func(time.Duration) {
	return func(d time.Duration) {
		if in := l.inst.Load(); in != nil {
			in.fsync.Record(context.Background(), d.Seconds(), l.kindOpt(in, id))
		}
	}
}

// appended records an append answered, from its start.
func (l *latencyMetrics) appended(id logid.ID, start time.Time) {
	if in := l.inst.Load(); in != nil {
		in.append.Record(context.Background(), time.Since(start).Seconds(), l.kindOpt(in, id))
	}
}

// replicated records how long an append waited for the in-sync replicas.
func (l *latencyMetrics) replicated(id logid.ID, start time.Time) {
	if in := l.inst.Load(); in != nil {
		in.replication.Record(context.Background(), time.Since(start).Seconds(), l.kindOpt(in, id))
	}
}

// stored counts the messages an append stored in a queue partition (not a
// retry that stored nothing again).
func (l *latencyMetrics) stored(id logid.ID, _ time.Time, req *storagev1.AppendRequest, resp *storagev1.AppendResponse) {
	in := l.inst.Load()
	if in == nil || in.messaging == nil || id.GetKind() != storagev1.LogKind_LOG_KIND_QUEUE_PARTITION || resp.GetDuplicate() {
		return
	}
	n := len(req.GetRecords())
	if b := req.GetBatch(); b != nil {
		n = int(b.GetRecordCount())
	}
	q, ok := in.cache.CachedQueue(id.GetQueueId())
	if !ok {
		return
	}
	in.messaging.Produced(q, n)
}

// registerDomainMetrics creates the latency histograms and the gauges of
// replication and disk space, and counts produced messages into m.
func (e *Engine) registerDomainMetrics(mp metric.MeterProvider, m *telemetry.Messaging) error {
	meter := mp.Meter("github.com/opendms/dms/services/storage")
	in := &latencyInstruments{messaging: m, cache: e.cache}
	var err error
	for _, h := range []struct {
		into       *metric.Float64Histogram
		name, desc string
	}{
		{&in.append, "dms.storage.append.duration", "Time to answer an append on the leader: write, fsync and, for synchronous logs, the wait for the in-sync replicas."},
		{&in.fsync, "dms.storage.fsync.duration", "Time of one fsync of log data (one covers every append of a group commit)."},
		{&in.replication, "dms.storage.replication.duration", "Time a synchronous append waited, after the leader's write, for every in-sync replica to have it on disk."},
	} {
		if *h.into, err = meter.Float64Histogram(h.name, metric.WithUnit("s"), metric.WithDescription(h.desc), metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
			return err
		}
	}
	for k := range len(storagev1.LogKind_name) + 1 {
		in.byKind = append(in.byKind, metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", kindName(storagev1.LogKind(k))))))
	}
	e.latency.inst.Store(in)

	underReplicated, err := meter.Int64ObservableGauge("dms.storage.under_replicated_partitions", metric.WithUnit("{partition}"),
		metric.WithDescription("Units (queue partitions, delivery and scheduler shards) this node leads with fewer in-sync replicas than replicas."))
	if err != nil {
		return err
	}
	offline, err := meter.Int64ObservableGauge("dms.storage.offline_partitions", metric.WithUnit("{partition}"),
		metric.WithDescription("Units without a leader (no in-sync replica alive), as this node's placement view sees them: every node reports the same count."))
	if err != nil {
		return err
	}
	fsSize, err := meter.Int64ObservableGauge("dms.storage.filesystem.size", metric.WithUnit("By"),
		metric.WithDescription("Size of the filesystem that holds the storage directory."))
	if err != nil {
		return err
	}
	fsAvail, err := meter.Int64ObservableGauge("dms.storage.filesystem.available", metric.WithUnit("By"),
		metric.WithDescription("Bytes available to dmsd on the filesystem that holds the storage directory."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		under, off := e.replicationCounts()
		o.ObserveInt64(underReplicated, under)
		o.ObserveInt64(offline, off)
		if size, avail, ok := filesystemSpace(e.cfg.Dir); ok {
			o.ObserveInt64(fsSize, size)
			o.ObserveInt64(fsAvail, avail)
		}
		return nil
	}, underReplicated, offline, fsSize, fsAvail)
	return err
}

// replicationCounts counts the under-replicated units this node leads and
// the units with no leader. Alone (no cluster), nothing is replicated.
func (e *Engine) replicationCounts() (under, offline int64) {
	if e.cluster == nil || e.cluster.Placement == nil {
		return 0, 0
	}
	for _, st := range e.cluster.Placement.Units() {
		switch {
		case st.GetLeader() == "":
			offline++
		case st.GetLeader() == e.cluster.Node && len(st.GetIsr()) < len(st.GetReplicas()):
			under++
		}
	}
	return under, offline
}
