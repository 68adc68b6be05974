package partitionlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const lockFileName = "LOCK"

// Log is a durable, append-only, checksummed log of records stored as a
// sequence of segment files in one directory. All methods are safe for
// concurrent use.
type Log struct {
	opts   Options
	dir    string
	logger *slog.Logger
	lock   *os.File

	mu     sync.Mutex
	segs   []*segment    // ordered by base offset; the last one is active
	closed bool          // guarded by mu
	notify chan struct{} // closed and replaced whenever NextOffset grows (guarded by mu)

	start atomic.Int64 // first retained offset
	hw    atomic.Int64 // high watermark: one past the last visible offset

	// Append queue, drained by the writer goroutine.
	qmu     sync.Mutex
	queue   []*appendReq
	spare   []*appendReq
	qclosed bool
	qsignal chan struct{} // capacity 1

	writerDone  chan struct{}
	flusherStop chan struct{}
	flusherDone chan struct{}

	// Pipelined group commit (sync mode): the writer hands written chunks to
	// the syncer goroutine, which fsyncs them while the writer writes the
	// next ones. See runSyncer.
	smu          sync.Mutex
	scond        *sync.Cond // on smu; broadcast whenever a field below changes
	written      []*chunk   // written, waiting for an fsync
	writtenReqs  int        // appends in written
	syncing      bool       // the syncer is fsyncing or completing a taken set
	syncErr      error      // an fsync failed; the writer must roll back
	failedChunks []*chunk   // chunks failed by syncErr, completed by the writer
	draining     bool       // the writer waits for the syncer to go idle
	lingerDone   bool       // the syncer's linger timer fired
	lingerExpect int        // while the syncer lingers: appends it waits for
	lingerUntil  time.Time  // while the syncer lingers: when it stops waiting
	sstop        bool
	syncerDone   chan struct{}

	// Encryption at rest (nil keys: off). Nonces are noncePrefix followed by
	// a counter that starts at a random value, so no two batches encrypted
	// with one key get the same nonce, across logs and restarts.
	// keys is swapped by SetKeys (a rotation); every append and scan loads
	// it once and keeps that ring for the batch or scan.
	keys        atomic.Pointer[Keyring]
	noncePrefix [4]byte
	nonceCtr    atomic.Uint64

	// Owned by the writer goroutine.
	active *segment
	wbuf   []byte
	ibuf   []byte
	tbuf   []byte

	dirty       atomic.Bool // async mode: written but not yet fsynced
	retentionMu sync.Mutex  // serializes retention, TrimBefore, TruncateTo and Reset

	// gen is incremented (under mu) whenever a truncation or reset changes
	// the published state in a way that may let bytes a reader is reading
	// be cut off or rewritten; readers that see it change start over.
	gen atomic.Uint64
	// pending is a truncation or reset whose intent is durable but whose
	// work did not finish (an I/O error); owned by the writer goroutine,
	// which finishes it before anything else is written.
	pending *intent

	// Leader-epoch history (epochs.go).
	emu    sync.Mutex
	epochs []EpochEntry

	syncs atomic.Int64 // fsyncs of segment data, for tests and metrics

	// Damage found since Open (damage.go).
	dmgRanges, dmgOffsets, dmgBytes, dmgTorn atomic.Int64
	repairing                                atomic.Bool    // a background repair runs
	repairQueue                              map[int64]bool // sealed segments to repair; guarded by mu
	repairWG                                 sync.WaitGroup // the background repair, waited for by Close
	reported                                 sync.Map       // damage positions already logged by readers
	hooks                                    *testHooks     // fault injection for tests; nil in production
}

// testHooks lets tests inject faults and observe the writer.
type testHooks struct {
	writeAt      func(f *os.File, p []byte, off int64) (int, error)
	beforeSync   func(f *os.File) error
	beforeCreate func() error // creating the next segment at a roll
	onEnqueue    func()
	onHandOff    func(reqs int) // the writer handed a written chunk to the syncer
	onLinger     func(expected, got int)
	// truncStep is called before each step of a truncation or reset (see
	// truncate.go); an error fails the step.
	truncStep func(step string) error
}

// Open opens the log in opts.Dir, creating it if needed. If the log already
// exists, Open recovers it after a crash: the last segment is verified batch
// by batch and truncated after its last complete, valid batch, and its
// indexes are rebuilt. Older segments are not scanned. The directory is locked
// against concurrent use by another Log (in this or another process).
func Open(opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("partitionlog: creating log directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("partitionlog: opening lock file: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("partitionlog: locking %s (is the log open elsewhere?): %w", opts.Dir, err)
	}
	l := &Log{
		opts:       opts,
		dir:        opts.Dir,
		logger:     opts.Logger.With("component", "partitionlog", "dir", opts.Dir),
		lock:       lock,
		notify:     make(chan struct{}),
		qsignal:    make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	l.keys.Store(opts.Keys)
	// Seeded even without keys: SetKeys may turn encryption on later.
	if err := l.seedNonces(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := l.load(); err != nil {
		for _, s := range l.segs {
			s.unref()
		}
		lock.Close()
		return nil, err
	}
	if opts.Durability == DurabilitySync {
		l.scond = sync.NewCond(&l.smu)
		l.syncerDone = make(chan struct{})
		go l.runSyncer()
	}
	go l.runWriter()
	if opts.Durability == DurabilityAsync {
		l.flusherStop = make(chan struct{})
		l.flusherDone = make(chan struct{})
		go l.runFlusher()
	}
	return l, nil
}

// load opens the existing segments (or creates the first one) and recovers
// the last segment.
func (l *Log) load() error {
	if err := l.loadEpochs(); err != nil {
		return err
	}
	if err := l.redoIntent(); err != nil {
		return err
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("partitionlog: listing log directory: %w", err)
	}
	var bases []int64
	type other struct {
		base int64
		name string
	}
	var others []other
	for _, e := range ents {
		base, ext, ok := parseSegmentFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if ext == logExt {
			bases = append(bases, base)
		} else {
			others = append(others, other{base, e.Name()})
		}
	}
	slices.Sort(bases)
	dirChanged := false
	for _, o := range others {
		if _, found := slices.BinarySearch(bases, o.base); !found {
			// An index whose log was deleted (retention interrupted by a crash).
			if err := os.Remove(filepath.Join(l.dir, o.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("partitionlog: removing orphaned index: %w", err)
			}
			dirChanged = true
		}
	}
	if len(bases) == 0 {
		s, err := createSegment(l.dir, 0)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		dirChanged = true
	} else {
		interval := int64(l.opts.IndexIntervalBytes)
		kc := keyCheck{keys: l.keys.Load(), verified: map[uint32]bool{}}
		for i, base := range bases[:len(bases)-1] {
			s, rebuilt, corrupt, err := openSealedSegment(l.dir, base, bases[i+1], interval, kc)
			if err != nil {
				return err
			}
			l.segs = append(l.segs, s)
			if rebuilt {
				l.logger.Warn("partitionlog: rebuilt inconsistent indexes of sealed segment", "segment", s.logPath)
			}
			if corrupt != nil {
				l.logger.Error("partitionlog: sealed segment is corrupt; reads past the damage will fail", "segment", s.logPath, "err", corrupt)
			}
		}
		s, repairs, indexedBeyond, err := recoverActiveSegment(l.dir, bases[len(bases)-1], interval, kc)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		for _, r := range repairs {
			l.reportRepair(r)
		}
		if indexedBeyond >= 0 {
			l.logger.Error("partitionlog: the last segment ends before a batch its index names: it was cut short, or lost writes a crash interrupted before their fsync (never acknowledged)",
				"segment", s.logPath, "validBytes", s.size, "nextOffset", s.next, "indexedOffset", indexedBeyond)
			l.dmgRanges.Add(1)
			l.dmgOffsets.Add(indexedBeyond - s.next + 1)
		}
	}
	if dirChanged {
		if err := syncDir(l.dir); err != nil {
			return err
		}
	}
	l.active = l.segs[len(l.segs)-1]
	l.start.Store(l.segs[0].base)
	l.hw.Store(l.active.next)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("partitionlog: syncing directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("partitionlog: syncing directory: %w", err)
	}
	return nil
}

// StartOffset returns the first retained offset.
func (l *Log) StartOffset() int64 { return l.start.Load() }

// NextOffset returns one past the last visible offset (the high watermark).
func (l *Log) NextOffset() int64 { return l.hw.Load() }

// Size returns the number of bytes the log's segment and index files occupy.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sizeLocked()
}

func (l *Log) sizeLocked() int64 {
	var n int64
	for _, s := range l.segs {
		n += s.diskSize()
	}
	return n
}

// diskSize is the segment's size on disk as of the last publication.
func (s *segment) diskSize() int64 {
	return s.size + s.idxN*idxEntrySize + s.tidxN*tidxEntrySize
}

// WaitFor blocks until NextOffset() > offset, ctx is done (returning
// ctx.Err()) or the log is closed (returning ErrClosed). NextOffset goes
// down only through TruncateTo and Reset; a waiter for an offset they
// removed is woken, finds it missing and waits on until the log grows past
// it again (a caller that must notice truncations watches NextOffset, or
// Options.OnPublish).
func (l *Log) WaitFor(ctx context.Context, offset int64) error {
	for {
		if l.hw.Load() > offset {
			return nil
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		if l.hw.Load() > offset {
			l.mu.Unlock()
			return nil
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// segView is a consistent snapshot of a segment's visible state.
type segView struct {
	size, next, idxN, tidxN, maxTs int64
}

// acquire returns the segment holding offset from, with a reference taken,
// or nil if from >= NextOffset().
func (l *Log) acquire(from int64) (*segment, segView, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, segView{}, ErrClosed
	}
	if start := l.start.Load(); from < start {
		return nil, segView{}, fmt.Errorf("%w: offset %d is below the start offset %d", ErrOffsetOutOfRange, from, start)
	}
	if from >= l.hw.Load() {
		return nil, segView{}, nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > from }) - 1
	s := l.segs[i]
	s.ref()
	return s, s.view(), nil
}

func (s *segment) view() segView {
	return segView{size: s.size, next: s.next, idxN: s.idxN, tidxN: s.tidxN, maxTs: s.maxTs}
}

var scanBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func getScanBuf() *[]byte { return scanBufPool.Get().(*[]byte) }

func putScanBuf(bp *[]byte) {
	if cap(*bp) <= 1<<20 {
		scanBufPool.Put(bp)
	}
}

// Read returns the visible entries from offset from (inclusive), up to about
// maxBytes of payload (each entry counting at least one byte) but always at
// least one entry if one exists at or after from. Reading at or after NextOffset() returns no entries and no error;
// reading below StartOffset() returns an error wrapping ErrOffsetOutOfRange. A
// damaged batch yields an error wrapping ErrCorrupt naming the segment file
// and position (entries before the damage are returned first, by an earlier
// call). The returned data does not alias any internal buffer.
//
// Read decodes FormatRecords batches only: at a batch of another format it
// stops with an error wrapping ErrOpaqueBatch that names the batch's offsets
// (entries before it are returned first, by an earlier call).
func (l *Log) Read(from int64, maxBytes int) ([]Entry, error) {
	bp := getScanBuf()
	defer putScanBuf(bp)
	orig := from
	for {
		gen := l.gen.Load()
		var out []Entry
		used := 0
		from = orig
		var err error
		for {
			s, v, aerr := l.acquire(from)
			if aerr != nil || s == nil {
				err = aerr
				break
			}
			var done bool
			out, used, done, err = l.readSegment(s, v, from, maxBytes, out, used, bp)
			s.unref()
			if err != nil || done {
				break
			}
			from = v.next
		}
		if l.gen.Load() != gen {
			// A truncation or reset raced with the read: what was read may
			// come from bytes that were cut off and rewritten. Start over.
			continue
		}
		if len(out) > 0 {
			return out, nil
		}
		return nil, err
	}
}

// readSegment appends entries of s from offset from. done reports that the
// byte budget is exhausted.
func (l *Log) readSegment(s *segment, v segView, from int64, maxBytes int, out []Entry, used int, bp *[]byte) (_ []Entry, _ int, done bool, _ error) {
	pos, atRel, err := lookupOffset(s.idx, v.idxN, from-s.base)
	if err != nil {
		return out, used, false, err
	}
	if pos >= v.size {
		pos, atRel = 0, 0 // defensive: never trust an entry past the visible end
	}
	sc := l.readScanner(s, v, pos, atRel, *bp)
	defer func() { *bp = sc.buf[:0] }()
	for {
		b, err := l.nextForRead(s, v, &sc, pos, from)
		if err != nil || b == nil {
			return out, used, false, err
		}
		if b.lastOffset() < from {
			continue
		}
		if b.lost() {
			return out, used, false, l.lostAt(s, b, from)
		}
		if b.format() != FormatRecords {
			return out, used, false, opaqueError(b)
		}
		first, total := len(out), 0
		b.forEachRecord(func(off, ts int64, data []byte) bool {
			if off < from {
				return true
			}
			if len(out) > 0 && (maxBytes <= 0 || used+max(len(data), 1) > maxBytes) {
				done = true
				return false
			}
			out = append(out, Entry{Offset: off, Timestamp: ts, Data: data})
			used += max(len(data), 1)
			total += len(data)
			return true
		})
		// Copy the payloads out of the scan buffer into one allocation.
		arena := make([]byte, total)
		for i := first; i < len(out); i++ {
			n := copy(arena, out[i].Data)
			out[i].Data = arena[:n:n]
			arena = arena[n:]
		}
		if done || (maxBytes > 0 && used >= maxBytes) || maxBytes <= 0 {
			return out, used, true, nil
		}
	}
}

// readScanner returns a scanner that reads the visible batches of s from
// file position pos (the batch with offset s.base+atRel), decrypting them.
func (l *Log) readScanner(s *segment, v segView, pos, atRel int64, buf []byte) *scanner {
	sc := newScanner(s.log, s.logPath, pos, v.size, s.base+atRel, buf)
	sc.keys, sc.decrypt, sc.segNext = l.keys.Load(), true, v.next
	return sc
}

// OffsetForTime returns the first offset whose record timestamp is >= ts, or
// NextOffset() if there is none.
//
// Within an opaque batch (a Format other than FormatRecords) the records'
// timestamps are unknown: the batch counts as one record with its
// MaxTimestamp, so the answer is the base offset of the first batch whose
// MaxTimestamp is >= ts (no record with a timestamp >= ts is skipped).
func (l *Log) OffsetForTime(ts int64) (int64, error) {
	for {
		gen := l.gen.Load()
		off, err := l.offsetForTime(ts)
		if l.gen.Load() == gen {
			return off, err
		}
	}
}

func (l *Log) offsetForTime(ts int64) (int64, error) {
	bp := getScanBuf()
	defer putScanBuf(bp)
	after := int64(-1 << 63)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return 0, ErrClosed
		}
		var s *segment
		for _, c := range l.segs {
			if c.base >= after && c.next > c.base && c.maxTs >= ts {
				s = c
				break
			}
		}
		if s == nil {
			hw := l.hw.Load()
			l.mu.Unlock()
			return hw, nil
		}
		s.ref()
		v := s.view()
		l.mu.Unlock()
		off, found, err := l.searchTime(s, v, ts, bp)
		s.unref()
		if err != nil || found {
			return off, err
		}
		after = v.next
	}
}

// searchTime finds the first visible record of s with timestamp >= ts.
func (l *Log) searchTime(s *segment, v segView, ts int64, bp *[]byte) (int64, bool, error) {
	rel, err := lookupTime(s.tidx, v.tidxN, ts)
	if err != nil {
		return 0, false, err
	}
	pos, atRel, err := lookupOffset(s.idx, v.idxN, rel)
	if err != nil {
		return 0, false, err
	}
	if pos >= v.size {
		pos, atRel = 0, 0
	}
	sc := l.readScanner(s, v, pos, atRel, *bp)
	defer func() { *bp = sc.buf[:0] }()
	from := s.base + rel
	for {
		b, err := l.nextForRead(s, v, &sc, pos, from)
		if errors.Is(err, ErrLost) || (err == nil && b == nil) {
			// The end, or lost data to the segment's end: the answer is in
			// a later segment.
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if b.lost() || b.lastOffset() < from || b.maxTs < ts {
			continue
		}
		if b.format() != FormatRecords {
			return max(b.base, from), true, nil
		}
		found := int64(-1)
		b.forEachRecord(func(off, rts int64, _ []byte) bool {
			if off >= from && rts >= ts {
				found = off
				return false
			}
			return true
		})
		if found >= 0 {
			return found, true, nil
		}
	}
}

// Close stops accepting appends, completes the queued ones, fsyncs the active
// segment and its indexes, stops the flusher and closes the files. Reads and
// appends after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.qmu.Lock()
	if l.qclosed {
		l.qmu.Unlock()
		return ErrClosed
	}
	l.qclosed = true
	l.qmu.Unlock()
	l.signalWriter()
	<-l.writerDone
	l.repairWG.Wait()
	if l.flusherStop != nil {
		close(l.flusherStop)
		<-l.flusherDone
	}

	var errs []error
	a := l.active
	if err := l.repairTail(a); err != nil {
		errs = append(errs, err)
	}
	if err := l.syncData(a.log); err != nil {
		errs = append(errs, fmt.Errorf("partitionlog: close: %w", err))
	}
	if err := errors.Join(a.idx.Sync(), a.tidx.Sync()); err != nil {
		errs = append(errs, fmt.Errorf("partitionlog: close: %w", err))
	}

	l.mu.Lock()
	l.closed = true
	segs := l.segs
	l.segs = nil
	close(l.notify) // wake WaitFor callers; they observe closed
	l.mu.Unlock()
	for _, s := range segs {
		s.unref()
	}
	if err := l.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("partitionlog: close: %w", err))
	}
	return errors.Join(errs...)
}

// Remove closes the log (if still open) and deletes its directory.
func (l *Log) Remove() error {
	if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
		l.logger.Warn("partitionlog: error closing log being removed", "err", err)
	}
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("partitionlog: removing log directory: %w", err)
	}
	return nil
}
