package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/storage/logid"
)

// Bounds of releasing.
const (
	// releaseTimeout bounds one queue's batch once started; it is finished
	// even when the shard stops, so that what was published is recorded.
	releaseTimeout = 30 * time.Second
	// retryAfter holds back a queue whose publish failed.
	retryAfter = time.Second
	// releaseParallelism bounds the queues released at once.
	releaseParallelism = 8
	// readGap is the largest gap between wanted offsets that one read
	// spans rather than starting another: reading one record decodes its
	// whole stored batch, which costs about as much as decoding a few dozen
	// records in a row.
	readGap         = 32
	maxReadBytes    = 8 << 20
	initialAvgBytes = 256
)

// releaseItem is one due message taken from its bucket.
type releaseItem struct {
	b      *bucket
	offset int64
	due    int64
}

// redoGroup is a batch that a previous owner marked as being released and
// did not mark as released: it is published again as the same batch under
// the same idempotence key, so that storage stores it only if the previous
// owner did not.
type redoGroup struct {
	marker int64
	items  []releaseItem
}

// releaseKey is the idempotence key of the batch announced by the releasing
// marker at offset marker of a bucket: unique, and the same for a retry.
func releaseKey(b *bucket, marker int64) string {
	return fmt.Sprintf("%s@%d", logid.Key(b.log), marker)
}

// releaseLoop looks for due messages every tick.
func (sh *shard) releaseLoop() { sh.everyTick(sh.e.cfg.TickInterval, sh.releaseDue) }

// everyTick runs fn every interval, once the shard has listed its buckets,
// until the shard stops.
func (sh *shard) everyTick(interval time.Duration, fn func()) {
	select {
	case <-sh.listed:
	case <-sh.ctx.Done():
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-sh.ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// releaseDue releases every message due now, batch after batch; the queues
// of a round are released in parallel, each in due order.
func (sh *shard) releaseDue() {
	for sh.ctx.Err() == nil {
		nowMs := sh.nowMs()
		redo := sh.takeRedo(nowMs)
		groups := sh.takeDue(nowMs)
		if len(groups) == 0 && len(redo) == 0 {
			return
		}
		for _, g := range redo {
			sh.releaseQueue(g.items[0].b.queue, g.items, g.marker)
		}
		sem := make(chan struct{}, releaseParallelism)
		var wg sync.WaitGroup
		for qt, items := range groups {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				sh.releaseQueue(qt, items, -1)
			})
		}
		wg.Wait()
	}
}

// takeRedo returns the batches to publish again whose messages are all due.
func (sh *shard) takeRedo(nowMs int64) []redoGroup {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []redoGroup
	sh.redo = slices.DeleteFunc(sh.redo, func(g redoGroup) bool {
		for _, it := range g.items {
			if it.due > nowMs {
				return false
			}
		}
		if !g.items[0].b.queue.gone {
			out = append(out, g)
		}
		return true
	})
	return out
}

// takeDue takes up to a batch of due messages per queue out of the heaps,
// settling them in memory so that a cancel cannot race their release.
func (sh *shard) takeDue(nowMs int64) map[*queueTimers][]releaseItem {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out map[*queueTimers][]releaseItem
	wall := time.Now()
	for _, b := range sh.fireable {
		qt := b.queue
		if qt.gone || wall.Before(qt.retryAt) || len(b.heap)+len(b.staged) == 0 {
			continue
		}
		for len(out[qt]) < sh.e.cfg.ReleaseBatch {
			offset, due, ok := b.popDue(nowMs)
			if !ok {
				break
			}
			b.settle(offset, false)
			b.busy++
			if out == nil {
				out = map[*queueTimers][]releaseItem{}
			}
			out[qt] = append(out[qt], releaseItem{b, offset, due})
		}
	}
	return out
}

// releaseQueue publishes due messages of one queue, in due order, in
// chunks of one bucket each: it reads their bodies, marks the chunk as
// being released, publishes it through ingest under the messages' ids and
// an idempotence key naming that marker, and marks it released. A batch
// caught by a crash between the two markers is published again by the next
// owner under the same key (see redoGroup). marker >= 0 names the releasing
// marker of such a batch, which is then not written again.
func (sh *shard) releaseQueue(qt *queueTimers, items []releaseItem, marker int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(sh.ctx), releaseTimeout)
	defer cancel()
	records := map[*bucket]map[int64]*storagev1.Record{}
	for i := 0; i < len(items); {
		b := items[i].b
		j := i
		var offsets []int64
		for j < len(items) && items[j].b == b {
			offsets = append(offsets, items[j].offset)
			j++
		}
		recs, err := sh.readRecords(ctx, b, offsets)
		if err != nil {
			sh.failRelease(qt, items, "reading scheduled messages", err)
			return
		}
		records[b] = recs
		i = j
	}
	for start := 0; start < len(items); {
		b := items[start].b
		req := &ingestv1.PublishRequest{QueueId: qt.id}
		end, size := start, 0
		for end < len(items) && items[end].b == b && len(req.Messages) < message.MaxBatchMessages {
			rec := records[b][items[end].offset]
			if rec == nil {
				sh.logger.Error("scheduler: scheduled message missing from its bucket; dropped", "log", logid.Key(b.log), "offset", items[end].offset)
				end++
				continue
			}
			msgSize := message.Size(rec.GetMessage())
			if len(req.Messages) > 0 && size+msgSize > message.MaxBatchBytes {
				break
			}
			if rec.Message == nil {
				rec.Message = &dmsv1.Message{}
			}
			// Released messages are not delayed again.
			rec.Message.Delay, rec.Message.DeliverTime = nil, nil
			req.Messages = append(req.Messages, rec.GetMessage())
			req.MessageIds = append(req.MessageIds, rec.GetMessageId())
			size += msgSize
			end++
		}
		chunk := items[start:end]
		if marker >= 0 && end < len(items) {
			// A batch published again must be the same batch; it was
			// published in one piece the first time.
			marker = -1
		}
		if len(req.Messages) > 0 {
			m := marker
			if m < 0 {
				offsets := make([]int64, len(chunk))
				for k, it := range chunk {
					offsets[k] = it.offset
				}
				var err error
				if m, err = sh.appendMarker(ctx, b, &schedulerv1.TimerMarker{ReleasingOffsets: offsets}); err != nil {
					sh.failRelease(qt, items[start:], "marking scheduled messages as being released", err)
					return
				}
			}
			req.IdempotenceKey = releaseKey(b, m)
			_, err := sh.e.ingest.Publish(ctx, req)
			if refused(err) {
				err = sh.publishEach(ctx, req)
			}
			if rpcstatus.Reason(err) == "QUEUE_NOT_FOUND" {
				// Deleted with its timers; nothing left to release.
				sh.finishRelease(items[start:])
				return
			}
			if err != nil {
				sh.failRelease(qt, items[start:], "publishing released messages", err)
				return
			}
		}
		sh.recordReleased(ctx, b, chunk)
		start = end
	}
}

// refused says whether ingest refused a batch as invalid: retrying it as it
// is cannot help.
func refused(err error) bool {
	reason := rpcstatus.Reason(err)
	for _, e := range errs.All() {
		if e.Reason == reason {
			return e.Kind == errs.KindInvalidArgument
		}
	}
	return false
}

// publishEach publishes the messages of a refused batch one by one and
// drops those refused, so that one message the ingest role no longer
// accepts (its rules changed since it was scheduled) cannot hold back its
// queue forever. Each keeps an idempotence key of its own.
func (sh *shard) publishEach(ctx context.Context, req *ingestv1.PublishRequest) error {
	for i, m := range req.GetMessages() {
		_, err := sh.e.ingest.Publish(ctx, &ingestv1.PublishRequest{
			QueueId: req.GetQueueId(), Messages: []*dmsv1.Message{m}, MessageIds: req.GetMessageIds()[i : i+1],
			IdempotenceKey: fmt.Sprintf("%s#%d", req.GetIdempotenceKey(), i),
		})
		switch {
		case refused(err):
			sh.logger.Error("scheduler: a scheduled message was refused when released; dropped",
				"queue", req.GetQueueId(), "message_id", req.GetMessageIds()[i], "err", err)
		case err != nil:
			return err
		}
	}
	return nil
}

// recordReleased writes the released marker of a chunk of one bucket and
// ends its release.
func (sh *shard) recordReleased(ctx context.Context, b *bucket, items []releaseItem) {
	offsets := make([]int64, len(items))
	for i, it := range items {
		offsets[i] = it.offset
	}
	if _, err := sh.appendMarker(ctx, b, &schedulerv1.TimerMarker{ReleasedOffsets: offsets}); err != nil && !b.queue.gone {
		// They were published; a restart publishes them again under the
		// same key, which storage recognises.
		sh.logger.Error("scheduler: recording released messages", "log", logid.Key(b.log), "messages", len(offsets), "err", err)
	}
	sh.finishRelease(items)
}

func (sh *shard) finishRelease(items []releaseItem) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, it := range items {
		it.b.busy--
	}
}

// failRelease gives items back to their heaps and holds the queue back for
// a while.
func (sh *shard) failRelease(qt *queueTimers, items []releaseItem, what string, err error) {
	sh.logger.Warn("scheduler: "+what+"; retrying", "queue", qt.id, "messages", len(items), "err", err)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, it := range items {
		it.b.unsettle(it.offset, it.due)
		it.b.busy--
	}
	qt.retryAt = time.Now().Add(retryAfter)
}

// readRecords reads the records at offsets of a bucket, reading runs of
// nearby offsets with one call: messages scheduled together are usually
// due together and stored side by side.
func (sh *shard) readRecords(ctx context.Context, b *bucket, offsets []int64) (map[int64]*storagev1.Record, error) {
	out := make(map[int64]*storagev1.Record, len(offsets))
	sh.mu.Lock()
	var sorted []int64
	for _, o := range offsets {
		if c, ok := b.cache[o]; ok {
			out[o] = c.rec
			b.uncache(o)
		} else {
			sorted = append(sorted, o)
		}
	}
	sh.mu.Unlock()
	if len(sorted) == 0 {
		return out, nil
	}
	if err := sh.fetch(ctx, b, sorted, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// fetch reads the records at offsets of a bucket into out. Records read on
// the way that were not asked for are added too when extra says so.
func (sh *shard) fetch(ctx context.Context, b *bucket, offsets []int64, out map[int64]*storagev1.Record, extra func(int64, *storagev1.Record) bool) error {
	sorted := slices.Clone(offsets)
	slices.Sort(sorted)
	avg := initialAvgBytes
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1]-sorted[j] <= readGap {
			j++
		}
		maxBytes := 1
		if j > i {
			span := int(sorted[j] - sorted[i] + 1)
			maxBytes = min(span*avg+avg/2, maxReadBytes)
		}
		resp, err := sh.e.storage.Read(ctx, &storagev1.ReadRequest{Log: b.log, Offset: sorted[i], MaxBytes: int32(maxBytes)})
		if err != nil {
			return err
		}
		recs := resp.GetRecords()
		k, total := i, 0
		for _, r := range recs {
			total += proto.Size(r.GetRecord())
			for k <= j && sorted[k] < r.GetOffset() {
				k++ // not in the log any more
			}
			if k > j {
				break
			}
			if sorted[k] == r.GetOffset() {
				out[sorted[k]] = r.GetRecord()
				k++
			} else if extra != nil && extra(r.GetOffset(), r.GetRecord()) {
				out[r.GetOffset()] = r.GetRecord()
			}
		}
		if len(recs) > 0 {
			avg = max(total/len(recs), 1)
		}
		if k == i {
			k++ // nothing at or after this offset
		}
		i = k
	}
	return nil
}
