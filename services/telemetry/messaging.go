package telemetry

import (
	"context"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
)

// Attribute keys of the domain metrics. The first three are OpenTelemetry's
// messaging semantic conventions; Prometheus shows them with underscores
// (messaging_destination_name).
const (
	AttrSystem      = attribute.Key("messaging.system")
	AttrDestination = attribute.Key("messaging.destination.name")
	AttrGroup       = attribute.Key("messaging.consumer.group.name")
	AttrProject     = attribute.Key("dms.project")
	AttrReason      = attribute.Key("dms.failure.reason")
)

// systemName is messaging.system on every domain metric.
const systemName = "dms"

// Messaging holds the domain counters the roles add to: messages produced
// (storage, which every front end writes through), and per consumer group
// delivered, acknowledged, failed, dead-lettered and redriven (delivery).
// They are named as the OpenTelemetry messaging conventions name their
// client metrics (messaging.client.sent.messages, ...consumed.messages),
// under dms.messaging since a broker counts them, not a client.
//
// Labels are the project, the queue's display name and the group's display
// name, unless QueueLabels is off: then every series is per node and the
// number of series stays bounded whatever the number of queues. A nil
// *Messaging records nothing, for engines built without telemetry.
type Messaging struct {
	queueLabels bool

	produced, delivered, acked, failed, deadLettered, redriven metric.Int64Counter

	sets sync.Map // queue id or queue id/group id → metric.MeasurementOption
	node metric.MeasurementOption
}

// NewMessaging creates the domain counters on mp.
func NewMessaging(mp metric.MeterProvider, queueLabels bool) (*Messaging, error) {
	m := mp.Meter("github.com/opendms/dms/services/telemetry")
	out := &Messaging{queueLabels: queueLabels, node: metric.WithAttributeSet(attribute.NewSet(AttrSystem.String(systemName)))}
	for _, c := range []struct {
		into       *metric.Int64Counter
		name, desc string
	}{
		{&out.produced, "dms.messaging.produced.messages", "Messages stored in queue partitions (every front end; counted once, by the partition's leader)."},
		{&out.delivered, "dms.messaging.delivered.messages", "Deliveries of messages to consumers of a group (redeliveries included)."},
		{&out.acked, "dms.messaging.acked.messages", "Messages settled successfully by a group (acknowledged, auto-acknowledged, or skipped by its tag filter)."},
		{&out.failed, "dms.messaging.failed.messages", "Failed deliveries, by reason: FAILED_BY_CONSUMER, VISIBILITY_TIMEOUT, REDELIVER_REQUESTED."},
		{&out.deadLettered, "dms.messaging.dead_lettered.messages", "Messages moved to a group's dead-letter queue."},
		{&out.redriven, "dms.messaging.redriven.messages", "Dead letters given back to their group."},
	} {
		ctr, err := m.Int64Counter(c.name, metric.WithDescription(c.desc), metric.WithUnit("{message}"))
		if err != nil {
			return nil, err
		}
		*c.into = ctr
	}
	return out, nil
}

// QueueLabels reports whether series are labelled by queue and group.
func (m *Messaging) QueueLabels() bool { return m != nil && m.queueLabels }

// Queue returns the labels of a queue's series.
func (m *Messaging) Queue(q *metadatav1.QueueRecord) metric.MeasurementOption {
	if !m.queueLabels {
		return m.node
	}
	if o, ok := m.sets.Load(q.GetId()); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(QueueAttributes(q, nil))
	m.sets.Store(q.GetId(), o)
	return o
}

// Group returns the labels of a group's series.
func (m *Messaging) Group(q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) metric.MeasurementOption {
	if !m.queueLabels {
		return m.node
	}
	key := q.GetId() + "/" + g.GetId()
	if o, ok := m.sets.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(QueueAttributes(q, g))
	m.sets.Store(key, o)
	return o
}

// Forget drops the cached labels of a deleted queue.
func (m *Messaging) Forget(queueID string) {
	if m == nil {
		return
	}
	m.sets.Range(func(k, _ any) bool {
		if s := k.(string); s == queueID || strings.HasPrefix(s, queueID+"/") || strings.HasSuffix(s, "/"+queueID) || strings.Contains(s, "/"+queueID+"/") {
			m.sets.Delete(k)
		}
		return true
	})
}

// Produced counts n messages stored in q.
func (m *Messaging) Produced(q *metadatav1.QueueRecord, n int) {
	if m != nil && n > 0 {
		m.produced.Add(context.Background(), int64(n), m.Queue(q))
	}
}

// GroupCounts are what one state write of a group changed.
type GroupCounts struct {
	Delivered, Acked, DeadLettered, Redriven int
}

// Group counts a group's deliveries and settlements.
func (m *Messaging) GroupCounts(q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, c GroupCounts) {
	if m == nil || c == (GroupCounts{}) {
		return
	}
	ctx, opt := context.Background(), m.Group(q, g)
	for _, x := range []struct {
		ctr metric.Int64Counter
		n   int
	}{{m.delivered, c.Delivered}, {m.acked, c.Acked}, {m.deadLettered, c.DeadLettered}, {m.redriven, c.Redriven}} {
		if x.n > 0 {
			x.ctr.Add(ctx, int64(x.n), opt)
		}
	}
}

// Failed counts a failed delivery of a group's, with its reason.
func (m *Messaging) Failed(q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, reason string) {
	if m == nil {
		return
	}
	key := "failed/" + reason + "/" + q.GetId() + "/" + g.GetId()
	if !m.queueLabels {
		key = "failed/" + reason
	}
	o, ok := m.sets.Load(key)
	if !ok {
		kv := []attribute.KeyValue{AttrSystem.String(systemName), AttrReason.String(reason)}
		if m.queueLabels {
			set := QueueAttributes(q, g)
			kv = append(set.ToSlice(), AttrReason.String(reason))
		}
		o = metric.WithAttributeSet(attribute.NewSet(kv...))
		m.sets.Store(key, o)
	}
	m.failed.Add(context.Background(), 1, o.(metric.MeasurementOption))
}

// QueueAttributes are the labels of a queue (and group, when g is not nil).
func QueueAttributes(q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) attribute.Set {
	kv := []attribute.KeyValue{AttrSystem.String(systemName), AttrProject.String(q.GetProject()), AttrDestination.String(q.GetDisplayName())}
	if g != nil {
		kv = append(kv, AttrGroup.String(g.GetDisplayName()))
	}
	return attribute.NewSet(kv...)
}

// NodeAttributes are the labels of every series when queue labels are off.
func NodeAttributes() attribute.Set { return attribute.NewSet(AttrSystem.String(systemName)) }
