package partitionlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// appendReq is one Append call queued for the writer goroutine.
type appendReq struct {
	ctx   context.Context
	buf   *[]byte // encoded batch; the writer patches in the base offset
	count int64
	maxTs int64

	off  int64
	err  error
	done chan struct{} // capacity 1; receives once when the request completes
}

var (
	reqPool   = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}
	batchPool = sync.Pool{New: func() any { return new([]byte) }}
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
	if size > l.opts.MaxBatchBytes {
		return -1, fmt.Errorf("%w: %d records encode to %d bytes, limit is %d", ErrBatchTooLarge, len(recs), size, l.opts.MaxBatchBytes)
	}
	bp := batchPool.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size, max(size, 512))
	}
	*bp = (*bp)[:size]
	r := reqPool.Get().(*appendReq)
	r.ctx, r.buf, r.count, r.maxTs = ctx, bp, int64(len(recs)), encodeBatch(*bp, recs)

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
		// The writer still owns r; it is not recycled.
		return -1, ctx.Err()
	}
}

func (l *Log) release(r *appendReq) {
	if cap(*r.buf) <= maxPooledBatch {
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
// queued and commits it with one write (and, in sync mode, one fsync) per
// segment touched.
func (l *Log) runWriter() {
	defer close(l.writerDone)
	for range l.qsignal {
		for {
			l.qmu.Lock()
			reqs, closed := l.queue, l.qclosed
			l.queue = l.spare[:0]
			l.spare = nil
			l.qmu.Unlock()
			if len(reqs) == 0 {
				if closed {
					return
				}
				break
			}
			l.commit(reqs)
			clear(reqs)
			l.qmu.Lock()
			l.spare = reqs[:0]
			l.qmu.Unlock()
		}
	}
}

func (l *Log) commit(reqs []*appendReq) {
	live := reqs[:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			complete(r, -1, err)
		} else {
			live = append(live, r)
		}
	}
	for len(live) > 0 {
		seg := l.active
		err := l.repairTail(seg)
		if err == nil && seg.w.size > 0 && seg.w.size+int64(len(*live[0].buf)) > l.opts.SegmentBytes {
			if err = l.roll(); err == nil {
				continue
			}
		}
		n := 1
		if err == nil {
			end := seg.w.size + int64(len(*live[0].buf))
			for n < len(live) && end+int64(len(*live[n].buf)) <= l.opts.SegmentBytes {
				end += int64(len(*live[n].buf))
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

// writeChunk appends the batches of reqs to seg with one write, adds their
// index entries, fsyncs in sync mode, publishes them and completes reqs. On
// failure everything is rolled back and nothing is completed.
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
	if err == nil && l.opts.Durability == DurabilitySync {
		err = l.syncData(seg.log)
	}
	if err != nil {
		// Cut off whatever part of the chunk reached the files; the next write
		// happens only once that has succeeded (see repairTail).
		w.dirtyTail = true
		if rerr := l.repairTail(seg); rerr != nil {
			l.logger.Error("partitionlog: cannot roll back failed append; retrying before the next one", "err", rerr)
		}
		return fmt.Errorf("partitionlog: append to %s: %w", seg.logPath, err)
	}

	w.size, w.next, w.sinceIdx, w.maxTs = pos, next, since, maxTs
	w.idxSize += int64(len(ib))
	w.tidxSize += int64(len(tb))
	l.mu.Lock()
	seg.publishWriteState()
	l.hw.Store(next)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	if l.opts.Durability == DurabilityAsync {
		l.dirty.Store(true)
	}
	for _, r := range reqs {
		complete(r, r.off, nil)
	}
	return nil
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
// its indexes) and starts a new one at the next offset.
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
		ns, err = createSegment(l.dir, w.next)
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
	old.publishWriteState() // everything in it is fsynced now
	l.segs = append(l.segs, ns)
	l.mu.Unlock()
	l.active = ns
	return nil
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
	return fdatasync(f)
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
