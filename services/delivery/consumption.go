package delivery

import (
	"sync"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// consumption is one consumer of logs with its durable state: a consumer
// group reading its queue's partitions, the same group reading its dead
// letters, or one broadcast consumer reading the queue by itself. Its state
// lives in memory and in its state log, which is replayed on first use.
type consumption struct {
	kind       consumptionKind
	queue      *metadatav1.QueueRecord
	group      *metadatav1.GroupRecord
	consumerID string
	stateLog   logid.ID
	logs       []logid.ID
	// key names the consumption in the engine's map: its state log's key.
	key string
	// dropped is set when the engine forgot the consumption after a state
	// write failed: it serves nothing more (guarded by mu).
	dropped bool
	// receiptPrefix starts the receipt handle of every delivery it makes.
	receiptPrefix []byte
	// epoch is the ownership epoch it was loaded in; its writes carry it.
	epoch int64

	writer stateWriter

	mu       sync.Mutex
	loaded   bool
	parts    []*partitionState
	filter   *dmsv1.TagFilter
	rotation int           // first partition to serve on the next receive
	changed  chan struct{} // closed when something became available early
}

func newConsumption(kind consumptionKind, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, consumerID string) *consumption {
	c := &consumption{kind: kind, queue: q, group: g, consumerID: consumerID, changed: make(chan struct{}),
		stateLog:      stateLogID(kind, q.GetId(), g.GetId(), consumerID),
		receiptPrefix: receiptPrefix(kind, q.GetId(), g.GetId(), consumerID)}
	c.key = logid.Key(c.stateLog)
	if kind == kindDeadLetters {
		c.logs = []logid.ID{logid.DeadLetters(q.GetId(), g.GetId())}
	} else {
		for p := range q.GetPartitionCount() {
			c.logs = append(c.logs, logid.Partition(q.GetId(), p))
		}
	}
	return c
}

// stateLogID names the state log of a consumption, whose key also keys the
// engine's map of consumptions.
func stateLogID(kind consumptionKind, queueID, groupID, consumerID string) logid.ID {
	switch kind {
	case kindDeadLetters:
		return logid.DeadLetterState(queueID, groupID)
	case kindBroadcast:
		return logid.BroadcastState(queueID, groupID, consumerID)
	}
	return logid.GroupState(queueID, groupID)
}

// fifo reports whether one failed or in-flight message holds back the rest:
// FIFO queues, and their dead letters, keep one order.
func (c *consumption) fifo() bool { return c.queue.GetMode() == dmsv1.QueueMode_QUEUE_MODE_FIFO }

// deadLettersEnabled reports whether failures may move messages to the
// group's dead-letter queue.
func (c *consumption) deadLettersEnabled() bool {
	return c.kind == kindMessages && c.queue.GetDeadLetterEnabled() && c.queue.GetMaxConsumeCount() > 0
}

// signalChanged wakes receivers waiting for this consumption.
func (c *consumption) signalChanged() {
	close(c.changed)
	c.changed = make(chan struct{})
}
