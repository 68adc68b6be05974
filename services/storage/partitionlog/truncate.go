package partitionlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Truncation and reset (follower repair).
//
// Both run on the writer goroutine, queued like appends, so that appends
// queued before them complete first and appends queued after them land
// after the new end. Each is made crash-safe by an intent file (format in
// doc.go) that is written durably before anything changes and removed once
// everything is done: Open finishes an operation whose intent it finds, so a
// crash leaves either the old log (no intent yet) or the new one.
//
// Readers are protected by Log.gen: the published state is switched to the
// new one (and gen incremented) under Log.mu before any byte is cut off, so a
// reader that acquired a segment before the switch finds gen changed when it
// is done and starts over, and one that acquired it after never reads past
// the new end.

const intentFileName = "truncation-intent"

const intentFileHeader = "dms partitionlog truncation-intent 1"

type reqOp uint8

const (
	opAppend reqOp = iota
	opTruncate
	opReset
)

// intent is a truncation or reset whose intent file is durable.
type intent struct {
	reset  bool
	offset int64 // the new NextOffset (and, for a reset, StartOffset)
	// Truncation: the segment that becomes the active one, and the sizes its
	// files are cut to; every later segment is deleted.
	segBase                    int64
	logSize, idxSize, tidxSize int64
	// swapped: the in-memory state is the new one (not persisted).
	swapped bool
}

func (in *intent) String() string {
	if in.reset {
		return fmt.Sprintf("reset %d", in.offset)
	}
	return fmt.Sprintf("truncate %d %d %d %d %d", in.offset, in.segBase, in.logSize, in.idxSize, in.tidxSize)
}

// TruncateTo removes every record at or after the largest batch boundary
// <= offset (whole batches only: a batch holding offset goes too) and
// returns the new NextOffset, which may be lower than before. It waits for
// the appends queued before it; appends queued after it land after the new
// end. On return the truncation is durable: the active segment's files are
// cut and fsynced, later segments deleted, the directory fsynced, and the
// leader-epoch entries starting at or after the new end removed. Concurrent
// readers may get fewer records, never bytes that were cut off. WaitFor
// callers waiting for offsets that are gone keep waiting until the log grows
// past them again.
//
// Truncating at or after NextOffset() is a no-op. Truncating below
// StartOffset() removes everything, like Reset(ctx, offset), as Kafka's
// truncateTo does: the log restarts empty at offset.
//
// If ctx is done before the writer takes the request, nothing happens and
// ctx.Err() is returned. If an error is returned, the log is in the old
// state or, if the error came after the truncation was committed (its intent
// file written), in the new state, which NextOffset() tells; the rest of the
// work is then retried before the next append and by Open.
func (l *Log) TruncateTo(ctx context.Context, offset int64) (next int64, err error) {
	if offset < 0 {
		return -1, fmt.Errorf("%w: cannot truncate to negative offset %d", ErrOffsetOutOfRange, offset)
	}
	return l.control(ctx, opTruncate, offset)
}

// Reset deletes every record and every leader-epoch entry, leaving an empty
// log with StartOffset() == NextOffset() == offset, durably. A follower uses
// it when it is behind its leader's start offset, or to create a replica of
// a log whose first retained offset is > 0. Ordering, cancellation and
// errors are as for TruncateTo.
func (l *Log) Reset(ctx context.Context, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("%w: cannot reset to negative offset %d", ErrOffsetOutOfRange, offset)
	}
	_, err := l.control(ctx, opReset, offset)
	return err
}

// control queues a truncation or reset for the writer and waits for it.
func (l *Log) control(ctx context.Context, op reqOp, offset int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	r := reqPool.Get().(*appendReq)
	r.ctx, r.op, r.at = ctx, op, offset
	return l.submit(ctx, r)
}

// runControl carries out a queued truncation or reset on the writer
// goroutine.
func (l *Log) runControl(r *appendReq) {
	if err := r.ctx.Err(); err != nil {
		complete(r, -1, err)
		return
	}
	// Everything written so far must be published first: truncation works
	// on the published state, and the syncer must not publish behind it.
	l.settleSyncer(true)
	l.retentionMu.Lock()
	before := l.hw.Load()
	changed, err := l.finishPendingLocked()
	if err == nil {
		err = l.repairTail(l.active)
	}
	if err == nil {
		var c bool
		if r.op == opReset || r.at < l.start.Load() {
			c, err = l.reset(r.at)
		} else {
			c, err = l.truncate(r.at)
		}
		changed = changed || c
	}
	l.retentionMu.Unlock()
	next := l.hw.Load()
	if err != nil {
		complete(r, -1, err)
	} else {
		complete(r, next, nil)
	}
	if changed || next != before {
		l.onPublish(next)
	}
}

// step calls the fault-injection hook before a step of a truncation or reset.
func (l *Log) step(name string) error {
	if h := l.hooks; h != nil && h.truncStep != nil {
		if err := h.truncStep(name); err != nil {
			return fmt.Errorf("partitionlog: %s: %w", name, err)
		}
	}
	return nil
}

// truncate truncates the log to the last batch boundary <= o (o is at or
// above StartOffset). Caller: the writer, with retentionMu held, the syncer
// settled and no pending intent. changed reports that the in-memory state
// changed (even if an error follows).
func (l *Log) truncate(o int64) (changed bool, err error) {
	if o >= l.hw.Load() {
		return false, nil
	}
	l.mu.Lock()
	segs := slices.Clone(l.segs)
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > o }) - 1
	s := segs[i]
	v := s.view()
	l.mu.Unlock()

	ws, err := l.truncationPoint(s, v, o)
	if err != nil {
		return false, err
	}
	ns := s
	if s != l.active {
		// A sealed segment becomes the active one; its log was opened
		// read-only.
		if ns, err = openSegmentFiles(l.dir, s.base, os.O_RDWR); err != nil {
			return false, err
		}
		ns.w = ws
	}
	in := &intent{offset: ws.next, segBase: s.base, logSize: ws.size, idxSize: ws.idxSize, tidxSize: ws.tidxSize}
	if err := l.writeIntent(in); err != nil {
		if ns != s {
			ns.unref()
		}
		return false, err
	}

	// Committed: switch readers and the writer to the new state before any
	// byte is cut off.
	l.mu.Lock()
	l.gen.Add(1)
	victims := slices.Clone(l.segs[i+1:])
	if ns != s {
		victims = append(victims, s) // its files stay: ns has them open
	}
	ns.w = ws
	ns.publish(ws)
	l.segs = append(slices.Clone(l.segs[:i]), ns)
	l.hw.Store(ws.next)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	l.active = ns
	for _, vs := range victims {
		vs.unref()
	}
	in.swapped = true
	l.pending = in
	_, err = l.finishPendingLocked()
	return true, err
}

// truncationPoint finds the batch of s holding offset o and returns the
// write state of s truncated before that batch: its position and base
// offset, the index entries before it, and the maximum timestamp and index
// interval bytes of what is kept.
func (l *Log) truncationPoint(s *segment, v segView, o int64) (writeState, error) {
	bp := getScanBuf()
	defer putScanBuf(bp)
	pos, atRel, err := lookupOffset(s.idx, v.idxN, o-s.base)
	if err != nil {
		return writeState{}, err
	}
	if pos >= v.size {
		pos, atRel = 0, 0
	}
	// Headers and CRCs only: nothing is decrypted.
	sc := newScanner(s.log, s.logPath, pos, v.size, s.base+atRel, *bp)
	sc.keys, sc.segNext = l.keys.Load(), v.next
	defer func() { *bp = sc.buf[:0] }()
	var ws writeState
	for {
		b, err := sc.next()
		if err == io.EOF {
			return writeState{}, fmt.Errorf("%w: segment %s ends at offset %d, before offset %d", ErrCorrupt, s.logPath, sc.expect, o)
		}
		if err != nil {
			return writeState{}, fmt.Errorf("partitionlog: truncating: %w", err)
		}
		if b.next() > o {
			ws.size, ws.next = b.pos, b.base
			break
		}
	}
	// Keep the index entries of the batches before the boundary: an offset
	// entry (and its time entry, written with it) names the batch it points
	// at, so the entries for the boundary batch and later ones go, and a
	// sealed segment's final seal entry too.
	rel := ws.next - s.base
	k, e, err := searchIndex(s.idx, idxEntrySize, v.idxN, func(e []byte) bool {
		return int64(binary.BigEndian.Uint32(e)) < rel
	})
	if err != nil {
		return writeState{}, err
	}
	k++ // entries kept
	ws.idxSize, ws.tidxSize = k*idxEntrySize, k*tidxEntrySize
	ws.maxTs = math.MinInt64
	from, fromRel := int64(0), int64(0)
	if k > 0 {
		fromRel, from = int64(binary.BigEndian.Uint32(e)), int64(binary.BigEndian.Uint32(e[4:]))
		te, err := readEntries(s.tidx, tidxEntrySize, k-1, k, nil)
		if err != nil {
			return writeState{}, err
		}
		ws.maxTs = int64(binary.BigEndian.Uint64(te))
	}
	// The records between the last kept entry and the boundary add to the
	// maximum timestamp and to the bytes since that entry.
	ws.sinceIdx = ws.size - from
	sc = newScanner(s.log, s.logPath, from, ws.size, s.base+fromRel, sc.buf)
	sc.keys, sc.segNext = l.keys.Load(), v.next
	for {
		b, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return writeState{}, fmt.Errorf("partitionlog: truncating: %w", err)
		}
		ws.maxTs = max(ws.maxTs, b.maxTs)
	}
	return ws, nil
}

// reset empties the log at offset x. Caller: as for truncate.
func (l *Log) reset(x int64) (changed bool, err error) {
	in := &intent{reset: true, offset: x}
	if err := l.writeIntent(in); err != nil {
		return false, err
	}
	if err := l.swapReset(in); err != nil {
		// Nothing has changed yet: take the intent back if possible, else
		// the reset stays committed and is finished before the next append.
		if rerr := removeAndSync(l.dir, intentFileName); rerr != nil {
			l.pending = in
		}
		return false, err
	}
	l.pending = in
	_, err = l.finishPendingLocked()
	return true, err
}

// swapReset switches the in-memory state to an empty log at in.offset whose
// only segment is in.offset's: the old segment of that base if there is one
// (its files are cut to nothing afterwards, in place), else a new one. The
// other segments' files are deleted afterwards by resetFiles.
func (l *Log) swapReset(in *intent) error {
	x := in.offset
	l.mu.Lock()
	var old *segment
	for _, s := range l.segs {
		if s.base == x {
			old = s
		}
	}
	l.mu.Unlock()
	var ns *segment
	var err error
	switch {
	case old == l.active:
		ns = old
	case old != nil:
		ns, err = openSegmentFiles(l.dir, x, os.O_RDWR)
	default:
		ns, err = l.createSegment(x)
	}
	if err != nil {
		return err
	}
	ns.w = writeState{next: x, maxTs: math.MinInt64}
	l.mu.Lock()
	l.gen.Add(1)
	victims := l.segs
	l.segs = []*segment{ns}
	ns.publish(ns.w)
	l.start.Store(x)
	l.hw.Store(x)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	l.active = ns
	for _, s := range victims {
		if s != ns {
			s.unref()
		}
	}
	in.swapped = true
	return nil
}

// finishPending finishes an interrupted truncation or reset before the
// writer writes anything.
func (l *Log) finishPending() error {
	if l.pending == nil {
		return nil
	}
	l.retentionMu.Lock()
	changed, err := l.finishPendingLocked()
	l.retentionMu.Unlock()
	if changed {
		l.onPublish(l.hw.Load())
	}
	return err
}

// finishPendingLocked does (or redoes: every step is idempotent) what is left
// of l.pending after its intent was written. Caller: the writer, with
// retentionMu held. changed reports that it switched the in-memory state.
func (l *Log) finishPendingLocked() (changed bool, err error) {
	in := l.pending
	if in == nil {
		return false, nil
	}
	if err := l.step("files"); err != nil {
		return false, err
	}
	if in.reset {
		if !in.swapped {
			if err := l.swapReset(in); err != nil {
				return false, err
			}
			changed = true
		}
		if err := l.resetFiles(in.offset); err != nil {
			return changed, err
		}
	} else if err := l.truncateFiles(in); err != nil {
		return false, err
	}
	if err := l.step("epochs"); err != nil {
		return changed, err
	}
	if in.reset {
		err = l.clearEpochs()
	} else {
		err = l.truncateEpochsFromEnd(in.offset)
	}
	if err != nil {
		return changed, err
	}
	if err := l.step("done"); err != nil {
		return changed, err
	}
	if err := removeAndSync(l.dir, intentFileName); err != nil {
		return changed, err
	}
	l.pending = nil
	return changed, nil
}

// truncateFiles deletes every segment after in.segBase and cuts the files of
// in.segBase to the intent's sizes, fsyncing all of it.
func (l *Log) truncateFiles(in *intent) error {
	if err := l.removeSegmentFiles(func(base int64) bool { return base > in.segBase }); err != nil {
		return err
	}
	for _, c := range []struct {
		ext  string
		size int64
	}{{logExt, in.logSize}, {indexExt, in.idxSize}, {timeIndexExt, in.tidxSize}} {
		path := filepath.Join(l.dir, segmentFileName(in.segBase, c.ext))
		if err := l.truncateFile(path, c.size, c.ext != logExt); err != nil {
			return err
		}
	}
	return syncDir(l.dir)
}

// truncateFile cuts the file at path to at most size bytes and fsyncs it.
// A missing index file is left for Open to rebuild.
func (l *Log) truncateFile(path string, size int64, mayBeMissing bool) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		if mayBeMissing && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("partitionlog: truncating: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.Size() > size {
		err = f.Truncate(size)
	}
	if err == nil {
		err = l.syncData(f)
	}
	if err != nil {
		return fmt.Errorf("partitionlog: truncating %s: %w", path, err)
	}
	return nil
}

// resetFiles deletes every segment file but those of x and cuts those to
// nothing, fsyncing all of it.
func (l *Log) resetFiles(x int64) error {
	if err := l.removeSegmentFiles(func(base int64) bool { return base != x }); err != nil {
		return err
	}
	for _, ext := range []string{logExt, indexExt, timeIndexExt} {
		if err := l.truncateFile(filepath.Join(l.dir, segmentFileName(x, ext)), 0, ext != logExt); err != nil {
			return err
		}
	}
	return syncDir(l.dir)
}

// removeSegmentFiles deletes the segment files (logs first, so that a crash
// leaves only orphaned indexes, which Open deletes) whose base offset del
// selects.
func (l *Log) removeSegmentFiles(del func(base int64) bool) error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("partitionlog: listing log directory: %w", err)
	}
	var logs, others []string
	for _, e := range ents {
		base, ext, ok := parseSegmentFileName(e.Name())
		if !ok || !del(base) {
			continue
		}
		if ext == logExt {
			logs = append(logs, e.Name())
		} else {
			others = append(others, e.Name())
		}
	}
	for _, name := range append(logs, others...) {
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("partitionlog: deleting segment file: %w", err)
		}
	}
	return nil
}

func removeAndSync(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("partitionlog: removing %s: %w", name, err)
	}
	return syncDir(dir)
}

// writeIntent durably records in before anything of it is done.
func (l *Log) writeIntent(in *intent) error {
	if err := l.step("intent"); err != nil {
		return err
	}
	return writeChecksummedFile(l.dir, intentFileName, intentFileHeader+"\n"+in.String()+"\n")
}

// readIntent returns the intent left by an interrupted truncation or reset,
// or nil.
func (l *Log) readIntent() (*intent, error) {
	lines, exists, err := readChecksummedFile(l.dir, intentFileName)
	if err != nil || !exists {
		if err != nil {
			err = fmt.Errorf("%w (an interrupted truncation or reset cannot be finished)", err)
		}
		return nil, err
	}
	damaged := fmt.Errorf("%w: %s/%s is damaged: unknown content (an interrupted truncation or reset cannot be finished)", ErrCorrupt, l.dir, intentFileName)
	if len(lines) != 2 || lines[0] != intentFileHeader {
		return nil, damaged
	}
	kind, rest, _ := strings.Cut(lines[1], " ")
	switch kind {
	case "reset":
		v, ok := parseInts(rest, 1)
		if !ok || v[0] < 0 {
			return nil, damaged
		}
		return &intent{reset: true, offset: v[0]}, nil
	case "truncate":
		v, ok := parseInts(rest, 5)
		if !ok || v[0] < v[1] || v[1] < 0 || v[2] < 0 || v[3] < 0 || v[4] < 0 {
			return nil, damaged
		}
		return &intent{offset: v[0], segBase: v[1], logSize: v[2], idxSize: v[3], tidxSize: v[4]}, nil
	}
	return nil, damaged
}

// redoIntent finishes, at Open, a truncation or reset interrupted by a crash
// or an error, before the segments are loaded.
func (l *Log) redoIntent() error {
	in, err := l.readIntent()
	if err != nil || in == nil {
		return err
	}
	l.logger.Warn("partitionlog: finishing an interrupted truncation or reset", "intent", in.String())
	if in.reset {
		// There is no in-memory state yet: make sure the segment exists, and
		// let resetFiles do the rest.
		if _, err := os.Stat(filepath.Join(l.dir, segmentFileName(in.offset, logExt))); errors.Is(err, os.ErrNotExist) {
			ns, err := createSegment(l.dir, in.offset)
			if err != nil {
				return err
			}
			ns.unref() // load opens it again
		}
		in.swapped = true
	}
	l.pending = in
	if _, err := l.finishPendingLocked(); err != nil {
		return err
	}
	return nil
}
