package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// Intervals of a shard's background work.
const (
	maintainInterval  = 50 * time.Millisecond
	recomputeInterval = 10 * time.Second
	replayReadBytes   = 4 << 20
)

// shard is the state of one owned timer shard: the buckets of its queues.
// Everything below mu is guarded by it; storage and etcd are called without
// holding it, and the bucket operations are written so that a replay and
// the appends, releases and cancels running beside it may report the same
// record in any order.
type shard struct {
	e      *Engine
	n      int
	epoch  int64 // the ownership epoch; every write of the shard carries it
	logger *slog.Logger
	ctx    context.Context
	halt   context.CancelFunc
	wg     sync.WaitGroup

	listed chan struct{} // the bucket registry was read
	ready  chan struct{} // every listed bucket was replayed once

	// redelivered counts messages released again because the previous
	// owner may have released them already.
	redelivered atomic.Int64

	mu     sync.Mutex
	queues map[string]*queueTimers
	// fireable lists the buckets whose heap is complete, by hour, so that
	// each queue's messages are released in due order.
	fireable []*bucket
	// redo are batches to publish again after a takeover.
	redo []redoGroup
	// stagedUntil is the prefetch horizon reached: every message due
	// before it was staged (by the prefetch goroutine only).
	stagedUntil int64
}

// queueTimers are the buckets of one queue.
type queueTimers struct {
	id      string
	buckets map[int64]*bucket
	// retryAt holds back releases after a failed publish (wall clock).
	retryAt time.Time
	gone    bool // the queue was deleted
}

func newShard(e *Engine, n int, epoch int64) *shard {
	ctx, cancel := context.WithCancel(e.ctx)
	return &shard{
		e: e, n: n, epoch: epoch, logger: e.logger.With("shard", n, "epoch", epoch), ctx: ctx, halt: cancel,
		listed: make(chan struct{}), ready: make(chan struct{}), queues: map[string]*queueTimers{},
	}
}

func (sh *shard) start() {
	sh.wg.Go(sh.maintainLoop)
	sh.wg.Go(sh.releaseLoop)
	if sh.e.cfg.PrefetchAhead > 0 {
		sh.wg.Go(sh.prefetchLoop)
	}
}

// stop ends the shard's work; a release batch in flight is finished first.
func (sh *shard) stop() {
	sh.halt()
	sh.wg.Wait()
}

func (sh *shard) nowMs() int64 { return sh.e.now().UnixMilli() }

// inWindow says whether a bucket's messages are indexed in memory: those
// of past hours, the current one and the next.
func inWindow(hour, nowMs int64) bool { return hour <= hourOf(nowMs)+1 }

// list reads the shard's buckets from the etcd registry. Buckets of queues
// deleted while nobody owned the shard are unregistered (storage deleted
// their logs with the queue).
func (sh *shard) list() error {
	resp, err := sh.e.etcd.Get(sh.ctx, catalog.TimerBucketsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	gone := map[string]bool{}
	for _, kv := range resp.Kvs {
		queueID, hourText, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), catalog.TimerBucketsPrefix), "/")
		hour, err := strconv.ParseInt(hourText, 10, 64)
		if !ok || err != nil || !catalog.IsQueueID(queueID) || sh.e.shardOf(queueID) != sh.n {
			continue
		}
		if _, err := sh.e.cache.QueueByID(sh.ctx, queueID); errors.Is(err, errs.ErrQueueNotFound) {
			gone[queueID] = true
			continue
		}
		b := sh.queue(queueID).bucketFor(hour)
		close(b.registered)
	}
	for queueID := range gone {
		go sh.e.unregisterQueue(queueID)
	}
	return nil
}

// queue returns the timers of a queue, creating them; mu must be held.
func (sh *shard) queue(queueID string) *queueTimers {
	qt := sh.queues[queueID]
	if qt == nil {
		qt = &queueTimers{id: queueID, buckets: map[int64]*bucket{}}
		sh.queues[queueID] = qt
	}
	return qt
}

func (qt *queueTimers) bucketFor(hour int64) *bucket {
	b := newBucket(qt, hour)
	qt.buckets[hour] = b
	return b
}

// forgetQueue drops a deleted queue's timers; it reports whether there were
// any.
func (sh *shard) forgetQueue(queueID string) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	qt := sh.queues[queueID]
	if qt == nil {
		return false
	}
	qt.gone = true
	delete(sh.queues, queueID)
	sh.fireable = slices.DeleteFunc(sh.fireable, func(b *bucket) bool { return b.queue == qt })
	return true
}

// setFireable enters b in the release order; mu must be held.
func (sh *shard) setFireable(b *bucket) {
	if b.fireable {
		return
	}
	b.fireable = true
	i, _ := slices.BinarySearchFunc(sh.fireable, b.hour, func(x *bucket, hour int64) int { return int(x.hour - hour) })
	sh.fireable = slices.Insert(sh.fireable, i, b)
}

// maintainLoop reads the registry, replays every bucket once (the window's
// first, so that due messages are released soon after a takeover), and then
// keeps the window current: it indexes buckets whose hour comes near, finds
// the next due time of counted buckets again when it got lost, and deletes
// buckets of past hours with nothing pending.
func (sh *shard) maintainLoop() {
	for {
		err := sh.list()
		if err == nil {
			break
		}
		sh.logger.Error("scheduler: reading the timer bucket registry", "err", err)
		select {
		case <-sh.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	close(sh.listed)
	t := time.NewTicker(maintainInterval)
	defer t.Stop()
	for {
		if sh.maintain() && !isClosed(sh.ready) {
			close(sh.ready)
			pending, indexed := sh.counts()
			sh.logger.Info("scheduler shard loaded", "pending", pending, "indexed", indexed, "redelivered", sh.redelivered.Load())
		}
		select {
		case <-sh.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// maintain does one round of bucket upkeep and reports whether every
// bucket has been replayed.
func (sh *shard) maintain() bool {
	nowMs := sh.nowMs()
	var replays, recomputes, deletes []*bucket
	sh.mu.Lock()
	for _, qt := range sh.queues {
		for _, b := range qt.buckets {
			switch {
			case b.deleting != nil:
			case !b.replayed, inWindow(b.hour, nowMs) && !b.fireable, b.reindex:
				replays = append(replays, b)
			case !b.indexed && b.minStale && time.Since(b.recomputedAt) > recomputeInterval:
				recomputes = append(recomputes, b)
			case b.replayed && b.pending == 0 && b.busy == 0 && (b.hour+1)*hourMs <= nowMs:
				deletes = append(deletes, b)
			}
		}
	}
	sh.mu.Unlock()
	byHour := func(x, y *bucket) int { return int(x.hour - y.hour) }
	slices.SortFunc(replays, byHour)
	allReplayed := true
	for _, b := range replays {
		if err := sh.replay(b, inWindow(b.hour, nowMs)); err != nil {
			allReplayed = false
			if sh.ctx.Err() == nil {
				sh.logger.Error("scheduler: replaying a timer bucket", "log", logid.Key(b.log), "err", err)
			}
		}
	}
	for _, b := range recomputes {
		sh.mu.Lock()
		b.recomputedAt = time.Now()
		sh.mu.Unlock()
		if err := sh.replay(b, false); err != nil && sh.ctx.Err() == nil {
			sh.logger.Error("scheduler: replaying a timer bucket", "log", logid.Key(b.log), "err", err)
		}
	}
	for _, b := range deletes {
		sh.deleteBucket(b)
	}
	return allReplayed
}

// replay reads a bucket's log and applies it. With index the bucket's
// pending messages go into its heap and it becomes fireable; without, they
// are counted and the earliest remembered.
func (sh *shard) replay(b *bucket, index bool) error {
	sh.mu.Lock()
	firstIndex := index && !b.fireable
	if index {
		b.indexed = true
		b.reindex = false
	} else {
		b.resetCandidates()
	}
	sh.mu.Unlock()
	// Batches announced by a releasing marker and not (all) settled by a
	// released marker yet: usually none or one.
	var open []releasingBatch
	records := 0
	for offset := int64(0); ; {
		// The owner's epoch makes the replay a fencing read (see
		// storage's fenceRead): a replaced owner's writes stop here.
		resp, err := sh.e.storage.Read(sh.ctx, &storagev1.ReadRequest{Log: b.log, Offset: offset, MaxBytes: replayReadBytes, WriterEpoch: sh.epoch})
		if err != nil {
			return err
		}
		markers := make([]*schedulerv1.TimerMarker, len(resp.GetRecords()))
		for i, r := range resp.GetRecords() {
			if r.GetRecord().GetMessageId() != "" {
				continue
			}
			m := &schedulerv1.TimerMarker{}
			if err := proto.Unmarshal(r.GetRecord().GetPayload(), m); err != nil {
				return errs.Wrapf(errs.ErrInternal, "scheduler: %s offset %d: undecodable marker: %v", logid.Key(b.log), r.GetOffset(), err)
			}
			markers[i] = m
		}
		sh.mu.Lock()
		for i, r := range resp.GetRecords() {
			if m := markers[i]; m != nil {
				if firstIndex && len(m.GetReleasingOffsets()) > 0 {
					open = append(open, releasingBatch{r.GetOffset(), m.GetReleasingOffsets()})
				}
				for _, o := range m.GetReleasedOffsets() {
					b.settle(o, false)
				}
				for _, o := range m.GetCancelledOffsets() {
					b.settle(o, true)
				}
				if len(m.GetReleasedOffsets()) > 0 && len(open) > 0 {
					open = slices.DeleteFunc(open, func(rb releasingBatch) bool { return rb.settled(b) })
				}
			} else {
				b.add(r.GetOffset(), r.GetRecord().GetTimestampMs())
			}
			offset = r.GetOffset() + 1
		}
		sh.mu.Unlock()
		records += len(resp.GetRecords())
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			// Damaged beyond repair: the timers stored there are gone, and
			// markers there are forgotten (what they settled may be released
			// again: at least once, never lost).
			sh.logger.Error("scheduler: timer records lost to damaged data are skipped",
				"log", logid.Key(b.log), "fromOffset", lost.GetFirstOffset(), "toOffset", lost.GetLastOffset())
			offset = lost.GetLastOffset() + 1
			continue
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			break
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !b.replayed {
		b.replayed = true
		close(b.replayDone)
	}
	if !index {
		return nil
	}
	if b.deleting == nil && !b.queue.gone {
		sh.setFireable(b)
	}
	if !firstIndex {
		return nil
	}
	// A batch marked as being released and not as released was perhaps
	// published by the previous owner: it is published again as the same
	// batch under the same idempotence key, which storage stores only once.
	var whole []releasingBatch
	dues := map[int64]int64{}
	for _, rb := range open {
		ok := true
		for _, o := range rb.offsets {
			if !b.entries.get(o) || b.done.get(o) || !b.inHeap.get(o) {
				ok = false // its pending messages are released as usual
				break
			}
		}
		if ok {
			whole = append(whole, rb)
			for _, o := range rb.offsets {
				dues[o] = 0
			}
		}
	}
	if len(dues) > 0 {
		// The due times are in the heap, which keeps the entries until
		// they are popped as settled.
		for _, k := range b.heap {
			if _, ok := dues[offsetOf(k)]; ok {
				dues[offsetOf(k)] = b.dueOf(k)
			}
		}
	}
	again := 0
	for _, rb := range whole {
		items := make([]releaseItem, len(rb.offsets))
		for i, o := range rb.offsets {
			items[i] = releaseItem{b: b, offset: o, due: dues[o]}
			b.settle(o, false)
			b.busy++
		}
		sh.redo = append(sh.redo, redoGroup{marker: rb.marker, items: items})
		again += len(items)
	}
	if again > 0 {
		sh.redelivered.Add(int64(again))
		sh.logger.Warn("scheduler: publishing again batches that the previous owner may have published (storage drops them if it did)",
			"log", logid.Key(b.log), "messages", again)
	}
	if records > 0 {
		sh.logger.Debug("scheduler: timer bucket indexed", "log", logid.Key(b.log), "records", records, "pending", b.pending)
	}
	return nil
}

// releasingBatch is a batch announced by a releasing marker.
type releasingBatch struct {
	marker  int64
	offsets []int64
}

func (rb releasingBatch) settled(b *bucket) bool {
	for _, o := range rb.offsets {
		if !b.done.get(o) {
			return false
		}
	}
	return true
}

// deleteBucket removes a bucket of a past hour whose messages are all
// settled: its log, then its registration (a registration without a log is
// harmless, the reverse would leak the log).
func (sh *shard) deleteBucket(b *bucket) {
	sh.mu.Lock()
	if b.deleting != nil || b.busy > 0 || b.pending > 0 {
		sh.mu.Unlock()
		return
	}
	done := make(chan struct{})
	b.deleting = done
	sh.fireable = slices.DeleteFunc(sh.fireable, func(x *bucket) bool { return x == b })
	b.fireable = false
	sh.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(sh.ctx), 10*time.Second)
	defer cancel()
	_, err := sh.e.storage.DeleteLogs(ctx, &storagev1.DeleteLogsRequest{Logs: []*storagev1.LogId{b.log}})
	if err == nil {
		_, err = sh.e.etcd.Delete(ctx, catalog.TimerBucketKey(b.queue.id, b.hour))
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	defer close(done)
	if err != nil {
		sh.logger.Warn("scheduler: deleting a settled timer bucket", "log", logid.Key(b.log), "err", err)
		b.deleting = nil
		if b.indexed && b.replayed {
			sh.setFireable(b)
		}
		return
	}
	qt := b.queue
	if qt.buckets[b.hour] == b {
		delete(qt.buckets, b.hour)
	}
	if len(qt.buckets) == 0 && sh.queues[qt.id] == qt {
		delete(sh.queues, qt.id)
	}
}

// acquire returns the bucket of a queue and hour for an append, creating
// and registering it if needed, and counts the append as busy.
func (sh *shard) acquire(ctx context.Context, queueID string, hour int64) (*bucket, error) {
	for {
		sh.mu.Lock()
		qt := sh.queue(queueID)
		b := qt.buckets[hour]
		if b != nil && b.deleting != nil {
			wait := b.deleting
			sh.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		created := b == nil
		if created {
			// Registered buckets were all listed before any append, so a
			// bucket unknown here has no log yet: nothing to replay.
			b = qt.bucketFor(hour)
			b.replayed = true
			close(b.replayDone)
			if inWindow(hour, sh.nowMs()) {
				b.indexed = true
				sh.setFireable(b)
			}
		}
		b.busy++
		sh.mu.Unlock()
		if created {
			_, err := sh.e.etcd.Put(ctx, catalog.TimerBucketKey(queueID, hour), "")
			sh.mu.Lock()
			if err != nil {
				b.regErr = errs.Wrapf(errs.ErrUnavailable, "scheduler: registering timer bucket %s in etcd: %v", logid.Key(b.log), err)
				// The next append tries again with a new bucket.
				if qt.buckets[hour] == b {
					delete(qt.buckets, hour)
				}
				sh.fireable = slices.DeleteFunc(sh.fireable, func(x *bucket) bool { return x == b })
			}
			close(b.registered)
			sh.mu.Unlock()
		}
		select {
		case <-b.registered:
		case <-ctx.Done():
			sh.release(b)
			return nil, ctx.Err()
		}
		if b.regErr != nil {
			sh.release(b)
			return nil, b.regErr
		}
		return b, nil
	}
}

// release ends a busy operation on b.
func (sh *shard) release(b *bucket) {
	sh.mu.Lock()
	b.busy--
	sh.mu.Unlock()
}

// replayedBucket returns a queue's bucket of an hour once it was replayed,
// or nil when there is none.
func (sh *shard) replayedBucket(ctx context.Context, queueID string, hour int64) (*bucket, error) {
	sh.mu.Lock()
	var b *bucket
	if qt := sh.queues[queueID]; qt != nil {
		b = qt.buckets[hour]
	}
	sh.mu.Unlock()
	if b == nil {
		return nil, nil
	}
	select {
	case <-b.replayDone:
		return b, nil
	case <-ctx.Done():
		return nil, errs.Wrapf(errs.ErrUnavailable, "scheduler: timer bucket %s is still loading", logid.Key(b.log))
	}
}

// queueSchedule sums up a queue's pending messages.
func (sh *shard) queueSchedule(queueID string) QueueSchedule {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out QueueSchedule
	qt := sh.queues[queueID]
	if qt == nil {
		return out
	}
	for _, b := range qt.buckets {
		if b.pending == 0 {
			continue
		}
		out.Pending += b.pending
		if due, _ := b.nextDue(); due > 0 && (out.NextDueMs == 0 || due < out.NextDueMs) {
			out.NextDueMs = due
		}
	}
	return out
}

// counts returns the shard's pending messages and those in the window.
func (sh *shard) counts() (pending, indexed int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, qt := range sh.queues {
		for _, b := range qt.buckets {
			pending += b.pending
			if b.indexed {
				indexed += b.pending
			}
		}
	}
	return pending, indexed
}
