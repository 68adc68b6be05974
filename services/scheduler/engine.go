// Package scheduler is the scheduler role: the owner of everything that
// waits for a time. Today that is delayed and scheduled messages: a message
// sent with a delay or a deliver time is kept here, durably, and published
// to its queue through the ingest role when it is due, never before.
//
// Timers are split into shards (a queue's timers belong to shard hash(queue
// id) mod shards) and each shard has one active owner elected through etcd,
// so that a standby process takes over when the owner's lease dies. Only the
// owner keeps a shard's state and releases its messages.
//
// Durable state lives in storage, in timer buckets: one log per queue and
// hour of due time (logid.TimerBucket), holding the scheduled messages
// and markers that settle them (released, cancelled). Replaying a bucket
// gives its pending messages, so after a crash a new owner releases every
// pending message again: none is lost, none is released early, and those
// the crash may have caught between publishing and recording are counted as
// possible duplicates (at least once). In memory a shard keeps only an index
// of due times over the window of the current and next hour (8 bytes per
// pending message, no bodies) and a few bits per record of each bucket; the
// bodies are read back from storage when released. Buckets are registered in
// etcd (catalog.TimerBucketsPrefix) because storage does not list logs.
package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
)

// ownershipWait is how long a call waits for this process to own the
// queue's shard (a takeover in progress) before it fails with NOT_LEADER,
// for the caller to route it to the owner.
const ownershipWait = 3 * time.Second

// Ownership says which timer shards this node owns: each shard has one
// owner at a time, chosen by the cluster's controller with an epoch that
// storage checks on every write of the shard's buckets, so that a replaced
// owner cannot write any more.
type Ownership interface {
	// SchedulerShards is the number of timer shards of the cluster.
	SchedulerShards() int
	// SchedulerShardOwner returns the epoch in which this node owns shard
	// n, or mine false.
	SchedulerShardOwner(n int) (epoch int64, mine bool)
	// Changed returns a channel closed at the next change of ownership.
	Changed() <-chan struct{}
}

// Engine keeps the timer shards this process owns.
type Engine struct {
	cfg     Config
	own     Ownership
	etcd    *clientv3.Client
	storage storagev1.StorageServiceClient
	ingest  ingestv1.IngestServiceClient
	cache   *catalog.Cache
	now     func() time.Time
	logger  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	owners []*shard        // by shard number; nil when not owned
	change []chan struct{} // closed when the owner of a shard changes
}

// New returns a scheduler that runs the shards own gives it, keeps its
// timers in storage (and their registry in etcd) and releases them through
// ingest.
func New(cfg Config, own Ownership, etcd *clientv3.Client, storage storagev1.StorageServiceClient,
	ingest ingestv1.IngestServiceClient, cache *catalog.Cache, now func() time.Time, logger *slog.Logger) *Engine {
	cfg = cfg.withDefaults()
	shards := max(own.SchedulerShards(), 1)
	e := &Engine{
		cfg: cfg, own: own, etcd: etcd, storage: storage, ingest: ingest, cache: cache, now: now, logger: logger,
		owners: make([]*shard, shards), change: make([]chan struct{}, shards),
	}
	for i := range e.change {
		e.change[i] = make(chan struct{})
	}
	cache.Subscribe(e.onCatalogEvent)
	return e
}

// ownershipKey names a shard's ownership for people: its placement unit.
func ownershipKey(shard int) string { return placement.UnitKey(placement.SchedulerShard(int32(shard))) }

func (e *Engine) shardOf(queueID string) int {
	return int(placement.ShardOf(queueID, int32(len(e.owners))))
}

// Start runs the shards this node owns, starting and stopping them as the
// ownership moves, until ctx ends or Stop is called.
func (e *Engine) Start(ctx context.Context) {
	e.ctx, e.cancel = context.WithCancel(ctx)
	e.wg.Go(e.followOwnership)
}

// Stop stops releasing, waits for the batches in flight and gives up the
// shards, so that a standby takes over at once.
func (e *Engine) Stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.wg.Wait()
}

// followOwnership starts a shard when this node becomes its owner (again,
// in a new epoch: a shard that was owned elsewhere meanwhile replays its
// buckets) and stops it when the ownership moves.
func (e *Engine) followOwnership() {
	for {
		changed := e.own.Changed()
		for n := range e.owners {
			epoch, mine := e.own.SchedulerShardOwner(n)
			e.mu.Lock()
			cur := e.owners[n]
			e.mu.Unlock()
			if cur != nil && (!mine || cur.epoch != epoch) {
				cur.stop()
				e.setOwner(n, nil)
				e.logger.Info("scheduler shard given up", "shard", n, "epoch", cur.epoch)
				cur = nil
			}
			if mine && cur == nil && e.ctx.Err() == nil {
				sh := newShard(e, n, epoch)
				e.setOwner(n, sh)
				e.logger.Info("scheduler shard owned", "shard", n, "epoch", epoch)
				sh.start()
			}
		}
		select {
		case <-e.ctx.Done():
			e.mu.Lock()
			owned := append([]*shard(nil), e.owners...)
			e.mu.Unlock()
			for n, sh := range owned {
				if sh != nil {
					sh.stop()
					e.setOwner(n, nil)
				}
			}
			return
		case <-changed:
		}
	}
}

func (e *Engine) setOwner(n int, sh *shard) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.owners[n] = sh
	close(e.change[n])
	e.change[n] = make(chan struct{})
}

// shardFor returns the owned shard of a queue once its bucket registry is
// read, waiting a little for a campaign about to be won.
func (e *Engine) shardFor(ctx context.Context, queueID string) (*shard, error) {
	n := e.shardOf(queueID)
	timeout := time.NewTimer(ownershipWait)
	defer timeout.Stop()
	for {
		e.mu.Lock()
		sh, changed := e.owners[n], e.change[n]
		e.mu.Unlock()
		if sh != nil {
			select {
			case <-sh.listed:
				return sh, nil
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		select {
		case <-changed:
		case <-timeout.C:
			return nil, errs.Wrapf(errs.ErrNotLeader, "scheduler: this node does not own timer shard %d of queue %s", n, queueID)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Schedule stores messages of one queue to be released at their due times
// and returns their schedule ids and message ids once they are durable. A
// retry with the idempotence key of an earlier call stores nothing again
// and returns that call's results (the message ids it stored).
func (e *Engine) Schedule(ctx context.Context, queueID string, entries []*schedulerv1.ScheduleEntry, idempotenceKey string) (scheduleIDs, messageIDs []string, err error) {
	if len(entries) == 0 {
		return nil, nil, nil
	}
	for i, en := range entries {
		if en.GetMessageId() == "" || en.GetMessage() == nil || en.GetDueMs() <= 0 {
			return nil, nil, errs.Wrapf(errs.ErrRequestInvalid, "scheduler: entry %d needs a message id, a message and a due time", i)
		}
	}
	if _, err := e.cache.QueueByID(ctx, queueID); err != nil {
		return nil, nil, err
	}
	sh, err := e.shardFor(ctx, queueID)
	if err != nil {
		return nil, nil, err
	}
	return sh.schedule(ctx, queueID, entries, idempotenceKey)
}

// Cancel settles scheduled messages of a queue before they are released,
// with one result per schedule id.
func (e *Engine) Cancel(ctx context.Context, queueID string, scheduleIDs []string) ([]*dmsv1.CancelResult, error) {
	sh, err := e.shardFor(ctx, queueID)
	if err != nil {
		return nil, err
	}
	return sh.cancel(ctx, queueID, scheduleIDs)
}

// Reschedule moves a scheduled message of a queue to another due time and
// returns its new schedule id and its message id.
func (e *Engine) Reschedule(ctx context.Context, queueID, scheduleID string, dueMs int64) (string, string, error) {
	if dueMs <= 0 {
		return "", "", errs.Wrapf(errs.ErrDelayInvalid, "scheduler: due time %d is not a time", dueMs)
	}
	sh, err := e.shardFor(ctx, queueID)
	if err != nil {
		return "", "", err
	}
	return sh.reschedule(ctx, queueID, scheduleID, dueMs)
}

// QueueSchedule sums up the scheduled messages of one queue.
type QueueSchedule struct {
	Pending int64
	// NextDueMs is 0 when nothing is pending.
	NextDueMs int64
}

// QueueSchedules reports the pending scheduled messages of queues, once the
// shards that hold them have replayed their buckets.
func (e *Engine) QueueSchedules(ctx context.Context, queueIDs []string) ([]QueueSchedule, error) {
	out := make([]QueueSchedule, len(queueIDs))
	for i, id := range queueIDs {
		sh, err := e.shardFor(ctx, id)
		if err != nil {
			return nil, err
		}
		select {
		case <-sh.ready:
		case <-ctx.Done():
			return nil, errs.Wrapf(errs.ErrUnavailable, "scheduler: timer shard %d is still loading its buckets", sh.n)
		}
		out[i] = sh.queueSchedule(id)
	}
	return out, nil
}

// Status reports the shards and, for the owned ones, their counts.
func (e *Engine) Status() []*schedulerv1.ShardStatus {
	e.mu.Lock()
	owners := append([]*shard(nil), e.owners...)
	e.mu.Unlock()
	out := make([]*schedulerv1.ShardStatus, len(owners))
	for n, sh := range owners {
		out[n] = &schedulerv1.ShardStatus{Shard: int32(n), ElectionKey: ownershipKey(n)}
		if sh != nil {
			out[n].Owner = true
			out[n].Pending, out[n].Indexed = sh.counts()
			out[n].RedeliveredAfterRestart = sh.redelivered.Load()
		}
	}
	return out
}

// onCatalogEvent forgets the timers of deleted queues; storage deletes
// their buckets with the rest of the queue's data.
func (e *Engine) onCatalogEvent(ev catalog.Event) {
	if ev.Kind != catalog.QueueDeleted {
		return
	}
	e.mu.Lock()
	sh := e.owners[e.shardOf(ev.QueueID)]
	e.mu.Unlock()
	if sh != nil && sh.forgetQueue(ev.QueueID) {
		go e.unregisterQueue(ev.QueueID)
	}
}

// unregisterQueue deletes the bucket registrations of a deleted queue.
func (e *Engine) unregisterQueue(queueID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.etcd.Delete(ctx, catalog.TimerBucketsOfQueuePrefix(queueID), clientv3.WithPrefix()); err != nil {
		e.logger.Warn("scheduler: unregistering the buckets of a deleted queue", "queue", queueID, "err", err)
	}
}
