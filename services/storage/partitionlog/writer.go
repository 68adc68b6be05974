package partitionlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"
)

// appendReq is one Append call (or a truncation or reset, see op) queued
// for the writer goroutine.
type appendReq struct {
	ctx   context.Context
	buf   *[]byte // encoded batch; the writer patches in the base offset
	count int64
	maxTs int64
	exact bool  // AppendBatchAt: the batch must get base offset at
	at    int64 // the required base offset (exact), or the truncation or reset offset (op)
	op    reqOp

	off  int64
	err  error
	done chan struct{} // capacity 1; receives once when the request completes
}

// chunk is a run of appends written to one segment with one write, waiting
// in sync mode for the fsync that makes it durable.
type chunk struct {
	seg        *segment
	reqs       []*appendReq
	start, end writeState // the segment's write state before and after the chunk
}

var (
	reqPool   = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}
	batchPool = sync.Pool{New: func() any { return new([]byte) }}
	chunkPool = sync.Pool{New: func() any { return new(chunk) }}
)

const maxPooledBatch = 1 << 20

// Append appends recs as one batch with consecutive offsets and returns the
// offset of the first. It is all or nothing. With DurabilitySync it returns
// once the batch is fsynced (sharing the write and fsync with concurrent
// appends); with DurabilityAsync once it is written to the OS. On error the
// returned offset is -1. If ctx is done before Append returns, it returns
// ctx.Err(); the batch is then appended only if the writer had already taken
// it (a batch still queued when ctx is done is dropped). An empty recs appends
// nothing and returns NextOffset().
//
// With Options.Keys set, the batch is encrypted here, on the caller's
// goroutine, so that concurrent appenders encrypt in parallel and the single
// writer only copies bytes.
func (l *Log) Append(ctx context.Context, recs []Record) (firstOffset int64, err error) {
	if len(recs) == 0 {
		l.qmu.Lock()
		closed := l.qclosed
		l.qmu.Unlock()
		if closed {
			return -1, ErrClosed
		}
		return l.NextOffset(), nil
	}
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	size := encodedBatchSize(recs)
	keys := l.keys.Load()
	if keys != nil {
		size += encryptionOverhead
	}
	if size > l.opts.MaxBatchBytes {
		return -1, fmt.Errorf("%w: %d records encode to %d bytes, limit is %d", ErrBatchTooLarge, len(recs), size, l.opts.MaxBatchBytes)
	}
	bp := batchPool.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size, max(size, 512))
	}
	*bp = (*bp)[:size]
	r := reqPool.Get().(*appendReq)
	r.ctx, r.buf, r.count = ctx, bp, int64(len(recs))
	if keys != nil {
		r.maxTs = encodeEncryptedBatch(*bp, recs, keys.active, l.nextNonce())
	} else {
		r.maxTs = encodeBatch(*bp, recs)
	}
	return l.submit(ctx, r)
}

// submit queues r for the writer and waits for its completion or ctx.
func (l *Log) submit(ctx context.Context, r *appendReq) (int64, error) {
	l.qmu.Lock()
	if l.qclosed {
		l.qmu.Unlock()
		l.release(r)
		return -1, ErrClosed
	}
	l.queue = append(l.queue, r)
	l.qmu.Unlock()
	l.signalWriter()
	if h := l.hooks; h != nil && h.onEnqueue != nil {
		h.onEnqueue()
	}

	select {
	case <-r.done:
		off, err := r.off, r.err
		l.release(r)
		return off, err
	case <-ctx.Done():
		// The writer (or the syncer) still owns r; it is not recycled.
		return -1, ctx.Err()
	}
}

func (l *Log) release(r *appendReq) {
	if r.buf != nil && cap(*r.buf) <= maxPooledBatch {
		batchPool.Put(r.buf)
	}
	*r = appendReq{done: r.done}
	reqPool.Put(r)
}

func (l *Log) signalWriter() {
	select {
	case l.qsignal <- struct{}{}:
	default:
	}
}

func complete(r *appendReq, off int64, err error) {
	r.off, r.err = off, err
	r.done <- struct{}{}
}

// runWriter is the single writer goroutine: it repeatedly takes everything
// queued and writes it with one write per segment touched. In sync mode it
// hands what it wrote to the syncer and goes on writing while the syncer
// fsyncs (pipelined group commit); in async mode it completes the appends
// itself.
func (l *Log) runWriter() {
	defer close(l.writerDone)
	var timer *time.Timer
	for range l.qsignal {
		timer = l.coalesce(timer)
		// The syncer signals us when an fsync failed (coalesce may have
		// taken that signal).
		l.settleSyncer(false)
		for {
			l.qmu.Lock()
			reqs, closed := l.queue, l.qclosed
			l.queue = l.spare[:0]
			l.spare = nil
			l.qmu.Unlock()
			if len(reqs) == 0 {
				if closed {
					l.stopSyncer()
					return
				}
				break
			}
			l.process(reqs)
			clear(reqs)
			l.qmu.Lock()
			l.spare = reqs[:0]
			l.qmu.Unlock()
		}
	}
}

// coalesce holds the writer back while the syncer lingers for appends that
// are still being queued, so that they reach the file in one write rather
// than one write each: the syncer waits for them anyway, and each write is a
// system call made while the disk idles. The writer gives up once three
// quarters of the time left to the syncer's linger have passed, so that what
// it holds back is written before the syncer stops waiting.
func (l *Log) coalesce(timer *time.Timer) *time.Timer {
	if l.opts.Durability != DurabilitySync {
		return timer
	}
	for {
		l.smu.Lock()
		need, until := l.lingerExpect-l.writtenReqs, l.lingerUntil
		l.smu.Unlock()
		l.qmu.Lock()
		queued, closed := len(l.queue), l.qclosed
		l.qmu.Unlock()
		if until.IsZero() || queued >= need || closed {
			return timer
		}
		d := time.Until(until) * 3 / 4
		if d <= 0 {
			return timer
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-l.qsignal:
			timer.Stop()
		case <-timer.C:
			return timer
		}
	}
}

// process commits the appends of reqs and carries out the truncations and
// resets among them, in queue order.
func (l *Log) process(reqs []*appendReq) {
	for len(reqs) > 0 {
		i := 0
		for i < len(reqs) && reqs[i].op == opAppend {
			i++
		}
		if i > 0 {
			l.commit(reqs[:i]) // reorders reqs[:i] only
		}
		if i == len(reqs) {
			return
		}
		l.runControl(reqs[i])
		reqs = reqs[i+1:]
	}
}

// accept checks an append against the offset next it would get: an
// AppendBatchAt whose base offset is not next, or a batch whose offsets
// would pass math.MaxInt64, is refused.
func accept(r *appendReq, next int64) error {
	if r.exact && r.at != next {
		return fmt.Errorf("%w: the batch's base offset is %d, but the log's next offset is %d", ErrOffsetMismatch, r.at, next)
	}
	if next > math.MaxInt64-r.count {
		return fmt.Errorf("%w: %d records at offset %d would pass the largest offset", ErrOffsetOutOfRange, r.count, next)
	}
	return nil
}

// fits reports whether r can be written to seg at file position end and
// offset next: within SegmentBytes, and with offsets relative to the
// segment's base that fit the indexes' uint32 fields.
func (l *Log) fits(seg *segment, end, next int64, r *appendReq) bool {
	return end+int64(len(*r.buf)) <= l.opts.SegmentBytes && next+r.count-seg.base <= math.MaxUint32
}

func (l *Log) commit(reqs []*appendReq) {
	l.settleSyncer(false)
	live := reqs[:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			complete(r, -1, err)
		} else {
			live = append(live, r)
		}
	}
	for len(live) > 0 {
		// An interrupted truncation or reset is finished before anything is
		// written (it may replace the active segment).
		err := l.finishPending()
		seg := l.active
		if err == nil {
			err = l.repairTail(seg)
		}
		if err == nil {
			// Refused appends (AppendBatchAt at the wrong offset) fail alone.
			for len(live) > 0 {
				if aerr := accept(live[0], seg.w.next); aerr != nil {
					complete(live[0], -1, aerr)
					live = live[1:]
					continue
				}
				break
			}
			if len(live) == 0 {
				return
			}
			if seg.w.size > 0 && !l.fits(seg, seg.w.size, seg.w.next, live[0]) {
				// Rolling seals the segment, so everything in flight must be
				// durable and published first; a failed fsync found here rolls
				// the segment back, which may make the batch fit again.
				if l.settleSyncer(true) {
					continue
				}
				if err = l.roll(); err == nil {
					continue
				}
			}
		}
		n := 1
		if err == nil {
			end, next := seg.w.size+int64(len(*live[0].buf)), seg.w.next+live[0].count
			for n < len(live) && l.fits(seg, end, next, live[n]) && accept(live[n], next) == nil {
				end += int64(len(*live[n].buf))
				next += live[n].count
				n++
			}
			err = l.writeChunk(seg, live[:n])
		}
		if err != nil {
			for _, r := range live {
				complete(r, -1, err)
			}
			return
		}
		live = live[n:]
	}
}

// writeChunk appends the batches of reqs to seg with one write and adds their
// index entries. In sync mode it then hands them to the syncer; in async mode
// it publishes and completes them. On failure everything is rolled back and
// nothing is completed.
func (l *Log) writeChunk(seg *segment, reqs []*appendReq) error {
	w := &seg.w
	pos, next, since, maxTs := w.size, w.next, w.sinceIdx, w.maxTs
	interval := int64(l.opts.IndexIntervalBytes)
	ib, tb := l.ibuf[:0], l.tbuf[:0]
	var data []byte
	if len(reqs) == 1 {
		data = *reqs[0].buf
	} else {
		data = l.wbuf[:0]
	}
	for _, r := range reqs {
		b := *r.buf
		binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(next))
		if since >= interval {
			rel := uint32(next - seg.base)
			ib = putIdxEntry(ib, rel, uint32(pos))
			tb = putTidxEntry(tb, maxTs, rel)
			since = 0
		}
		r.off = next
		next += r.count
		pos += int64(len(b))
		since += int64(len(b))
		maxTs = max(maxTs, r.maxTs)
		if len(reqs) > 1 {
			data = append(data, b...)
		}
	}
	if len(reqs) > 1 && cap(data) <= 16<<20 {
		l.wbuf = data[:0]
	}
	l.ibuf, l.tbuf = ib[:0], tb[:0]

	err := l.writeAt(seg.log, data, w.size)
	if err == nil && len(ib) > 0 {
		if err = l.writeAt(seg.idx, ib, w.idxSize); err == nil {
			err = l.writeAt(seg.tidx, tb, w.tidxSize)
		}
	}
	if err != nil {
		// Cut off whatever part of the chunk reached the files; the next write
		// happens only once that has succeeded (see repairTail). Chunks before
		// this one, possibly still being fsynced, end at w.size and are kept.
		w.dirtyTail = true
		if rerr := l.repairTail(seg); rerr != nil {
			l.logger.Error("partitionlog: cannot roll back failed append; retrying before the next one", "err", rerr)
		}
		return fmt.Errorf("partitionlog: append to %s: %w", seg.logPath, err)
	}

	start := *w
	w.size, w.next, w.sinceIdx, w.maxTs = pos, next, since, maxTs
	w.idxSize += int64(len(ib))
	w.tidxSize += int64(len(tb))
	if l.opts.Durability == DurabilitySync {
		c := chunkPool.Get().(*chunk)
		c.seg, c.start, c.end = seg, start, *w
		c.reqs = append(c.reqs[:0], reqs...) // reqs is the writer's, reused at once
		l.handOff(c)
		return nil
	}
	l.publish(seg, *w)
	l.dirty.Store(true)
	l.onPublish(w.next) // before the appends return: they may rely on it
	for _, r := range reqs {
		complete(r, r.off, nil)
	}
	return nil
}

// onPublish calls Options.OnPublish, if set, with no lock held.
func (l *Log) onPublish(next int64) {
	if f := l.opts.OnPublish; f != nil {
		f(next)
	}
}

// publish makes a segment's state ws (and the offsets below ws.next) visible
// to readers.
func (l *Log) publish(seg *segment, ws writeState) {
	l.mu.Lock()
	seg.publish(ws)
	l.hw.Store(ws.next)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

// handOff queues a written chunk for the syncer.
func (l *Log) handOff(c *chunk) {
	h, n := l.hooks, len(c.reqs) // c belongs to the syncer once queued
	l.smu.Lock()
	l.written = append(l.written, c)
	l.writtenReqs += n
	l.smu.Unlock()
	l.scond.Broadcast()
	if h != nil && h.onHandOff != nil {
		h.onHandOff(n)
	}
}

// runSyncer is the syncer goroutine of sync mode. It takes every chunk
// written since its last fsync, fsyncs once, publishes the new high
// watermark and completes the appends in offset order. While it waits for the
// disk, the writer writes the next chunks, so that the disk is never idle
// between two group commits and the next group is ready when the fsync ends.
//
// Pipelining alone splits N closed-loop appenders into two alternating groups
// of about N/2 (those completed by one fsync come back while the next one
// runs), and an fsync's cost is mostly fixed, so the syncer also lingers: it
// expects as many appends as were in flight when it last completed a group
// (those it completed plus those written meanwhile), and waits for them to be
// written, but never longer than half its last fsync took. A lone appender
// is never delayed (it is expected alone), and an appender that went away
// costs at most one linger.
//
// After a failed fsync nothing written before it can be trusted to be on
// disk (Linux may drop the dirty pages), so the failed chunks and every chunk
// written after them are parked in failedChunks and the writer is signalled:
// it waits until the syncer is idle, truncates the files back to the start of
// the first failed chunk and fails those appends (settleSyncer).
func (l *Log) runSyncer() {
	defer close(l.syncerDone)
	var (
		taken     []*chunk
		expect    int           // appends expected in the next group
		lastFsync time.Duration // how long the last fsync took
	)
	l.smu.Lock()
	for {
		for len(l.written) == 0 && !l.sstop {
			l.scond.Wait()
		}
		if len(l.written) == 0 {
			l.smu.Unlock()
			return
		}
		l.linger(expect, lastFsync/2)
		taken, l.written = l.written, taken[:0]
		reqs := l.writtenReqs
		l.writtenReqs = 0
		failed := l.syncErr != nil
		l.syncing = true
		l.smu.Unlock()

		var err error
		if !failed {
			start := time.Now()
			err = l.syncChunks(taken)
			lastFsync = time.Since(start)
		}
		if failed || err != nil {
			l.smu.Lock()
			if l.syncErr == nil {
				l.syncErr = err
			}
			l.failedChunks = append(l.failedChunks, taken...)
			l.signalWriter()
			expect = 0
		} else {
			// Sampled before completing anyone: an appender completed now
			// may be back and written before the syncer looks again.
			l.smu.Lock()
			expect = reqs + l.writtenReqs
			l.smu.Unlock()
			last := taken[len(taken)-1]
			next := last.end.next // last goes back to the pool below
			l.publish(last.seg, last.end)
			// Before the appends return, so that OnPublish has seen their
			// offsets by then; while syncing, so that a truncation (which
			// settles the syncer first) cannot overtake the call.
			l.onPublish(next)
			for _, c := range taken {
				for _, r := range c.reqs {
					complete(r, r.off, nil)
				}
				clear(c.reqs)
				c.reqs, c.seg = c.reqs[:0], nil
				chunkPool.Put(c)
			}
			l.smu.Lock()
		}
		clear(taken)
		l.syncing = false
		l.scond.Broadcast()
	}
}

// linger waits, with smu held, until at least expect appends are written or
// limit has passed, unless someone waits for the syncer (the writer before a
// roll, Close) or an fsync failed.
func (l *Log) linger(expect int, limit time.Duration) {
	if l.writtenReqs >= expect || limit <= 0 {
		return
	}
	l.lingerDone = false
	l.lingerExpect, l.lingerUntil = expect, time.Now().Add(limit)
	t := time.AfterFunc(limit, func() {
		l.smu.Lock()
		l.lingerDone = true
		l.smu.Unlock()
		l.scond.Broadcast()
	})
	for l.writtenReqs < expect && !l.lingerDone && !l.draining && !l.sstop && l.syncErr == nil {
		l.scond.Wait()
	}
	l.lingerExpect, l.lingerUntil = 0, time.Time{}
	t.Stop()
	if h := l.hooks; h != nil && h.onLinger != nil {
		h.onLinger(expect, l.writtenReqs)
	}
}

// syncChunks fsyncs the segments the chunks were written to. They are all the
// active segment (the writer drains the syncer before rolling), so this is
// one fsync.
func (l *Log) syncChunks(cs []*chunk) error {
	var last *segment
	for _, c := range cs {
		if c.seg == last {
			continue
		}
		last = c.seg
		if err := l.syncData(c.seg.log); err != nil {
			return fmt.Errorf("partitionlog: append to %s: %w", c.seg.logPath, err)
		}
	}
	return nil
}

// settleSyncer is called by the writer. If an fsync failed, it waits for the
// syncer to go idle, rolls the active segment back to before the first failed
// chunk and fails the appends of every failed chunk, and reports true. With
// wait set it first waits until every chunk handed to the syncer is durable
// and published (or failed).
func (l *Log) settleSyncer(wait bool) (rolledBack bool) {
	if l.opts.Durability != DurabilitySync {
		return false
	}
	l.smu.Lock()
	if !wait && l.syncErr == nil {
		l.smu.Unlock()
		return false
	}
	l.draining = true
	l.scond.Broadcast() // cut a linger short
	for len(l.written) > 0 || l.syncing {
		l.scond.Wait()
	}
	l.draining = false
	err, failed := l.syncErr, l.failedChunks
	l.syncErr, l.failedChunks = nil, nil
	l.smu.Unlock()
	if err == nil {
		return false
	}
	seg := failed[0].seg
	seg.w = failed[0].start
	seg.w.dirtyTail = true
	if rerr := l.repairTail(seg); rerr != nil {
		l.logger.Error("partitionlog: cannot roll back after a failed fsync; retrying before the next append", "err", rerr)
	}
	for _, c := range failed {
		for _, r := range c.reqs {
			complete(r, -1, err)
		}
	}
	return true
}

// stopSyncer settles and stops the syncer once the writer has nothing left.
func (l *Log) stopSyncer() {
	if l.opts.Durability != DurabilitySync {
		return
	}
	l.settleSyncer(true)
	l.smu.Lock()
	l.sstop = true
	l.smu.Unlock()
	l.scond.Broadcast()
	<-l.syncerDone
}

// repairTail truncates the active segment's files back to the last good state
// after a failed write or fsync, and fsyncs the result.
func (l *Log) repairTail(seg *segment) error {
	w := &seg.w
	if !w.dirtyTail {
		return nil
	}
	err := errors.Join(seg.log.Truncate(w.size), seg.idx.Truncate(w.idxSize), seg.tidx.Truncate(w.tidxSize))
	if err == nil {
		err = l.syncData(seg.log)
	}
	if err != nil {
		return fmt.Errorf("partitionlog: truncating %s after a failed write: %w", seg.logPath, err)
	}
	w.dirtyTail = false
	return nil
}

// roll seals the active segment (final time index entry, fsync of the log and
// its indexes) and starts a new one at the next offset. In sync mode the
// caller has settled the syncer, so everything written is published.
func (l *Log) roll() error {
	old := l.active
	w := &old.w
	seal := putTidxEntry(l.tbuf[:0], w.maxTs, uint32(w.next-old.base))
	err := l.writeAt(old.tidx, seal, w.tidxSize)
	if err == nil {
		err = l.syncData(old.log)
	}
	if err == nil {
		err = errors.Join(old.idx.Sync(), old.tidx.Sync())
	}
	var ns *segment
	if err == nil {
		ns, err = l.createSegment(w.next)
	}
	if err == nil {
		if err = syncDir(l.dir); err != nil {
			ns.closeFiles()
			for _, p := range ns.paths() {
				os.Remove(p)
			}
		}
	}
	if err != nil {
		if terr := old.tidx.Truncate(w.tidxSize); terr != nil {
			w.dirtyTail = true
		}
		return fmt.Errorf("partitionlog: rolling segment %s: %w", old.logPath, err)
	}
	w.tidxSize += tidxEntrySize
	l.mu.Lock()
	old.publish(*w) // everything in it is fsynced now
	l.segs = append(l.segs, ns)
	l.mu.Unlock()
	l.active = ns
	return nil
}

// createSegment creates the next active segment (through the fault-injection
// hook in tests).
func (l *Log) createSegment(base int64) (*segment, error) {
	if h := l.hooks; h != nil && h.beforeCreate != nil {
		if err := h.beforeCreate(); err != nil {
			return nil, fmt.Errorf("partitionlog: creating segment: %w", err)
		}
	}
	return createSegment(l.dir, base)
}

// writeAt writes all of p at off (through the fault-injection hook in tests).
func (l *Log) writeAt(f *os.File, p []byte, off int64) error {
	var err error
	if h := l.hooks; h != nil && h.writeAt != nil {
		_, err = h.writeAt(f, p, off)
	} else {
		_, err = f.WriteAt(p, off)
	}
	return err
}

// syncData fsyncs segment data and counts it.
func (l *Log) syncData(f *os.File) error {
	if h := l.hooks; h != nil && h.beforeSync != nil {
		if err := h.beforeSync(f); err != nil {
			return err
		}
	}
	l.syncs.Add(1)
	if l.opts.OnSync == nil {
		return fdatasync(f)
	}
	start := time.Now()
	err := fdatasync(f)
	l.opts.OnSync(time.Since(start))
	return err
}

// runFlusher fsyncs the active segment every FlushInterval in async mode.
func (l *Log) runFlusher() {
	defer close(l.flusherDone)
	t := time.NewTicker(l.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.flusherStop:
			return
		case <-t.C:
		}
		if !l.dirty.Swap(false) {
			continue
		}
		l.mu.Lock()
		s := l.segs[len(l.segs)-1]
		s.ref()
		l.mu.Unlock()
		if err := l.syncData(s.log); err != nil {
			l.dirty.Store(true)
			l.logger.Error("partitionlog: background fsync failed", "segment", s.logPath, "err", err)
		}
		s.unref()
	}
}
