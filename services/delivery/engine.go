// Package delivery is the delivery role, the consumers' front door: per
// consumer group and partition it keeps the position, the acked set, the
// in-flight deliveries with their visibility deadlines and delivery counts,
// retries and dead letters, and it makes every change durable in a state log
// in storage before answering (a receive of a NORMAL queue excepted: see
// receive).
//
// Each file is one job: engine.go the Engine and its registry of loaded
// consumptions; replay.go loading one from its state log; receive.go
// choosing what to deliver and waiting for it; failures.go visibility
// expiry, retries and moves to dead letters; statelog.go and checkpoint.go
// writing the state log; ack.go settling by receipt handle; session.go the
// push session that streaming front ends drive; deadletters.go, seek.go and
// stats.go those operations; handler.go the gRPC edge, which only
// translates. partition.go is the state of one consumption in one log.
package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/recordfmt"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/telemetry"
)

// Ownership says which consumer groups this node serves: in a cluster the
// groups of a queue belong to one delivery shard, owned by one node at a
// time with an epoch that storage checks on every write of the shard's
// logs, so that an owner that was replaced cannot write any more.
type Ownership interface {
	// DeliveryOwner returns the epoch in which this node owns the delivery
	// shard of a queue, or mine false (and the owner, "" when none).
	DeliveryOwner(queueID string) (epoch int64, owner string, mine bool)
}

// ownsAll is the ownership of a node alone: it owns everything, and its
// writes take no part in fencing (epoch 0).
type ownsAll struct{}

func (ownsAll) DeliveryOwner(string) (int64, string, bool) { return 0, "", true }

// Engine keeps the delivery state of the consumptions it serves.
type Engine struct {
	cfg     Config
	storage storagev1.StorageServiceClient
	cache   *catalog.Cache
	own     Ownership
	signer  signer
	now     func() time.Time
	logger  *slog.Logger

	mu           sync.Mutex
	consumptions map[string]*consumption // by state log key

	// metrics counts deliveries and settlements (SetMetrics); nil counts
	// nothing.
	metrics *telemetry.Messaging

	// background counts the state writers and trims running, which Stop
	// waits for: what they write was already applied in memory and
	// answered, so they finish rather than being cancelled.
	background sync.WaitGroup
}

// Stop waits for the state writes in flight, until ctx ends. The listeners
// must have stopped first, so that no new request makes more.
func (e *Engine) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.background.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("delivery: state writes still in flight at stop: %w", ctx.Err())
	}
}

// NewEngine returns a delivery engine. receiptKey signs receipt handles and
// must be the same in every delivery process of the cluster. A nil own
// owns every group.
func NewEngine(cfg Config, storage storagev1.StorageServiceClient, cache *catalog.Cache, own Ownership, receiptKey []byte, now func() time.Time, logger *slog.Logger) *Engine {
	if own == nil {
		own = ownsAll{}
	}
	e := &Engine{cfg: cfg, storage: storage, cache: cache, own: own, signer: newSigner(receiptKey), now: now, logger: logger, consumptions: map[string]*consumption{}}
	cache.Subscribe(e.onCatalogEvent)
	return e
}

func (e *Engine) onCatalogEvent(ev catalog.Event) {
	if ev.Kind != catalog.QueueDeleted && ev.Kind != catalog.GroupDeleted {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, c := range e.consumptions {
		if c.queue.GetId() == ev.QueueID && (ev.Kind == catalog.QueueDeleted || c.group.GetId() == ev.GroupID) {
			delete(e.consumptions, key)
		}
	}
}

// drop forgets a loaded consumption, so that the next call loads it again
// from its state log.
func (e *Engine) drop(c *consumption) {
	e.mu.Lock()
	if e.consumptions[c.key] == c {
		delete(e.consumptions, c.key)
	}
	e.mu.Unlock()
	c.mu.Lock()
	c.dropped = true
	c.signalChanged() // receivers waiting on it stop using it
	c.mu.Unlock()
}

// startPosition says where a consumption without state begins.
type startPosition int

const (
	startEarliest startPosition = iota
	startLatest
)

// consumption returns the loaded consumption, replaying its state log on
// first use, if this node owns it. A consumption loaded in an earlier
// ownership epoch is loaded again: another node owned the group meanwhile.
func (e *Engine) consumption(ctx context.Context, kind consumptionKind, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, consumerID string, start startPosition) (*consumption, error) {
	epoch, owner, mine := e.own.DeliveryOwner(q.GetId())
	if !mine {
		return nil, errs.Wrapf(errs.ErrNotLeader, "delivery: the consumer groups of queue %s are served by node %q, not this one", q.GetId(), owner)
	}
	name := logid.Key(stateLogID(kind, q.GetId(), g.GetId(), consumerID))
	e.mu.Lock()
	c := e.consumptions[name]
	// A queue that got partitions, or whose dead-letter settings changed
	// (UpdateQueue), since the group was loaded is loaded again with them.
	if c == nil || c.epoch != epoch || c.queue.GetPartitionCount() != q.GetPartitionCount() ||
		c.queue.GetDeadLetterEnabled() != q.GetDeadLetterEnabled() || c.queue.GetMaxConsumeCount() != q.GetMaxConsumeCount() {
		c = newConsumption(kind, q, g, consumerID)
		c.epoch = epoch
		e.consumptions[name] = c
	}
	e.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		if err := e.load(ctx, c, start); err != nil {
			return nil, err
		}
		c.loaded = true
	}
	return c, nil
}

// readOne reads the record at offset, or nil when retention deleted it.
func (e *Engine) readOne(ctx context.Context, log logid.ID, offset int64) (*storagev1.StoredRecord, error) {
	resp, err := e.readRecords(ctx, log, offset, 1, 1)
	if err != nil {
		return nil, err
	}
	if recs := resp.GetRecords(); len(recs) > 0 && recs[0].GetOffset() == offset {
		return recs[0], nil
	}
	return nil, nil
}

// readRecords reads whole batches of a log from offset on and decodes their
// records at or after it (at most limit, when limit > 0), whatever format
// the batches were stored in: storage serves bytes, delivery decodes once.
func (e *Engine) readRecords(ctx context.Context, log logid.ID, offset int64, maxBytes int32, limit int) (*storagev1.ReadResponse, error) {
	resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: maxBytes, RawBatches: true})
	if err != nil {
		return nil, err
	}
	var recs []*storagev1.StoredRecord
	for _, b := range resp.GetBatches() {
		if recs, err = recordfmt.Decode(b, offset, limit-len(recs), recs); err != nil {
			return nil, fmt.Errorf("delivery: %s: %w", logid.Describe(log), err)
		}
		if limit > 0 && len(recs) >= limit {
			break
		}
	}
	resp.Records, resp.Batches = recs, nil
	return resp, nil
}
