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
	"github.com/opendms/dms/services/storage/logid"
)

// Engine keeps the delivery state of the consumptions it serves.
type Engine struct {
	cfg     Config
	storage storagev1.StorageServiceClient
	cache   *catalog.Cache
	signer  signer
	now     func() time.Time
	logger  *slog.Logger

	mu           sync.Mutex
	consumptions map[string]*consumption // by state log key

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
// must be the same in every delivery process of the cluster.
func NewEngine(cfg Config, storage storagev1.StorageServiceClient, cache *catalog.Cache, receiptKey []byte, now func() time.Time, logger *slog.Logger) *Engine {
	e := &Engine{cfg: cfg, storage: storage, cache: cache, signer: newSigner(receiptKey), now: now, logger: logger, consumptions: map[string]*consumption{}}
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

// startPosition says where a consumption without state begins.
type startPosition int

const (
	startEarliest startPosition = iota
	startLatest
)

// consumption returns the loaded consumption, replaying its state log on
// first use.
func (e *Engine) consumption(ctx context.Context, kind consumptionKind, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, consumerID string, start startPosition) (*consumption, error) {
	name := logid.Key(stateLogID(kind, q.GetId(), g.GetId(), consumerID))
	e.mu.Lock()
	c := e.consumptions[name]
	if c == nil {
		c = newConsumption(kind, q, g, consumerID)
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
	resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 1})
	if err != nil {
		return nil, err
	}
	if recs := resp.GetRecords(); len(recs) > 0 && recs[0].GetOffset() == offset {
		return recs[0], nil
	}
	return nil, nil
}
