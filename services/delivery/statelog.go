package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// stateBatch gathers what one receive or ack changes, to be made durable in
// one append per log (before the caller is answered, except a NORMAL
// queue's receive: see Engine.receive).
type stateBatch struct {
	records     map[int32]*deliveryv1.StateRecord
	order       []int32
	deadLetters []*storagev1.Record
	woke        bool // something became available at once
}

func (b *stateBatch) rec(partition int32) *deliveryv1.StateRecord {
	if b.records == nil {
		b.records = map[int32]*deliveryv1.StateRecord{}
	}
	r := b.records[partition]
	if r == nil {
		r = &deliveryv1.StateRecord{Partition: partition}
		b.records[partition] = r
		b.order = append(b.order, partition)
	}
	return r
}

func (b *stateBatch) empty() bool { return len(b.records) == 0 && len(b.deadLetters) == 0 }

// stateWriter appends a consumption's state in the order the changes were
// made in memory, one append for everything queued meanwhile, so that
// concurrent receives and acks share writes and fsyncs and nobody holds the
// consumption's lock while storage flushes.
type stateWriter struct {
	mu      sync.Mutex
	pending []pendingState
	active  bool
	// sinceCheckpoint counts state bytes submitted since the last
	// checkpoint; guarded by the consumption's mu, which submit holds.
	sinceCheckpoint int
	// failed is the error of a write that did not become durable (or may
	// not have): from then on the consumption's memory holds changes its
	// log may lack, so nothing more is written after them — later writes
	// fail with it, and the engine drops the consumption so that the next
	// call loads it again from what the log holds.
	failed error
	// checkpoints are the offsets of the latest checkpoints written, oldest
	// first; used by the writer goroutine only (one at a time, handed over
	// under mu).
	checkpoints []int64
}

type pendingState struct {
	state, deadLetters []*storagev1.Record
	// checkpointAt is the index in state of the first snapshot record, or
	// -1 when the batch carries no checkpoint.
	checkpointAt int
	done         chan error
}

// submit queues a batch for the consumption's state writer and returns the
// channel that reports when it is durable. It must be called with c.mu held,
// which fixes the order of the state log; the caller waits after unlocking.
// Dead letters are written before the state records that say they moved,
// so that a crash in between duplicates a dead letter rather than losing one.
func (e *Engine) submit(c *consumption, batch *stateBatch) <-chan error {
	done := make(chan error, 1)
	if batch.empty() {
		done <- nil
		return done
	}
	if batch.woke {
		c.signalChanged()
	}
	if e.metrics != nil && c.kind != kindDeadLetters {
		e.countBatch(c, batch)
	}
	ts := e.now().UnixMilli()
	pending := pendingState{deadLetters: batch.deadLetters, checkpointAt: -1, done: done}
	records := make([]*deliveryv1.StateRecord, 0, len(batch.order))
	for _, pi := range batch.order {
		records = append(records, batch.records[pi])
	}
	w := &c.writer
	// The loop may append a checkpoint to records, so it indexes.
	for i := 0; i < len(records); i++ {
		if i == len(batch.order) {
			pending.checkpointAt = len(pending.state)
		}
		payload, err := proto.Marshal(records[i])
		if err != nil {
			done <- fmt.Errorf("delivery: encoding state: %w", err)
			return done
		}
		pending.state = append(pending.state, &storagev1.Record{TimestampMs: ts, Payload: payload})
		if w.sinceCheckpoint += len(payload); i == len(records)-1 && pending.checkpointAt < 0 && w.sinceCheckpoint >= checkpointBytes {
			records = append(records, c.checkpointRecords()...)
			w.sinceCheckpoint = 0
		}
	}
	w.mu.Lock()
	if w.failed != nil {
		w.mu.Unlock()
		done <- w.failed
		return done
	}
	w.pending = append(w.pending, pending)
	start := !w.active
	w.active = true
	w.mu.Unlock()
	if start {
		e.background.Go(func() { e.writeState(c) })
	}
	return done
}

// flush submits a batch and waits until it is durable.
func (e *Engine) flush(ctx context.Context, c *consumption, batch *stateBatch) error {
	select {
	case err := <-e.submit(c, batch):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stateWriteTimeout bounds one state append; the writer does not use a
// caller's context because the change it makes durable is already applied.
const stateWriteTimeout = 30 * time.Second

// writeState drains the consumption's queue until it is empty.
func (e *Engine) writeState(c *consumption) {
	w := &c.writer
	for {
		w.mu.Lock()
		queued := w.pending
		w.pending = nil
		if len(queued) == 0 {
			w.active = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		var deadLetters, state []*storagev1.Record
		checkpointAt := -1
		for _, p := range queued {
			deadLetters = append(deadLetters, p.deadLetters...)
			if p.checkpointAt >= 0 {
				checkpointAt = len(state) + p.checkpointAt
			}
			state = append(state, p.state...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
		_, err := e.appendChunked(ctx, logid.DeadLetters(c.queue.GetId(), c.group.GetId()), deadLetters, c.epoch)
		var offsets []int64
		if err == nil {
			offsets, err = e.appendChunked(ctx, c.stateLog, state, c.epoch)
		}
		cancel()
		if err == nil && checkpointAt >= 0 {
			e.checkpointWritten(c, offsets[checkpointAt])
		}
		if err != nil {
			e.logger.Error("delivery state not written; the consumption is loaded again from its log", "log", c.key, "err", err)
			w.mu.Lock()
			w.failed = err
			queued = append(queued, w.pending...)
			w.pending, w.active = nil, false
			w.mu.Unlock()
			e.drop(c)
		}
		for _, p := range queued {
			p.done <- err
		}
		if err != nil {
			return
		}
	}
}

// appendChunked appends records in appends of at most ~4 MiB and returns
// the offset each record got.
func (e *Engine) appendChunked(ctx context.Context, log logid.ID, records []*storagev1.Record, writerEpoch int64) ([]int64, error) {
	offsets := make([]int64, 0, len(records))
	for len(records) > 0 {
		n, size := 0, 0
		for n < len(records) && (n == 0 || size+proto.Size(records[n]) <= 4<<20) {
			size += proto.Size(records[n])
			n++
		}
		resp, err := e.storage.Append(ctx, &storagev1.AppendRequest{Log: log, Records: records[:n], WriterEpoch: writerEpoch})
		if err != nil {
			return nil, err
		}
		for i := range n {
			offsets = append(offsets, resp.GetFirstOffset()+int64(i))
		}
		records = records[n:]
	}
	return offsets, nil
}
