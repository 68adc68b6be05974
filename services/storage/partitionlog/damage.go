package partitionlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Damaged data (see "Damage" in doc.go): a byte range of a segment that no
// longer holds valid batches, followed by valid ones, is copied to a
// quarantine file and overwritten by a "lost" batch that stands for the
// offsets it held. From then on it is an ordinary, checksummed batch that
// readers report as a LostRangeError, so every intact batch before and after
// it stays readable and the loss is recorded in the log itself.

// flagLost marks a lost batch: it holds no records, only a note, and stands
// for its recordCount offsets, whose data was damaged on disk.
const flagLost uint16 = 1 << 1

// ErrLost is wrapped by LostRangeError.
var ErrLost = errors.New("partitionlog: data lost")

// LostRangeError reports offsets From to To (inclusive) whose data was found
// damaged: they can never be read. Readers skip them by reading on from
// To+1. Detail says where the damage is (the segment file and position) and
// is meant for the server's log, not for clients.
type LostRangeError struct {
	From, To int64
	Detail   string
}

func (e *LostRangeError) Error() string {
	return fmt.Sprintf("partitionlog: offsets %d to %d are lost: %s", e.From, e.To, e.Detail)
}

// Unwrap makes errors.Is(err, ErrLost) true.
func (e *LostRangeError) Unwrap() error { return ErrLost }

func (b *batch) lost() bool { return b.flags&flagLost != 0 }

// lostError is what a reader returns at a lost batch, for offsets from on.
func lostError(s *segment, b *batch, from int64) *LostRangeError {
	note := strings.TrimRight(string(b.recs), "\x00")
	return &LostRangeError{From: max(b.base, from), To: b.lastOffset(),
		Detail: fmt.Sprintf("segment %s, position %d: %s", s.logPath, b.pos, note)}
}

// DamageStats counts damage a Log found since it was opened.
type DamageStats struct {
	Ranges   int64 // damaged ranges quarantined (recovery, repairs, scrubbing)
	Offsets  int64 // offsets those ranges held
	Bytes    int64 // bytes quarantined (torn tails included)
	TornTail int64 // bytes of torn tails cut off by recovery (also quarantined)
}

// Damage returns what the log found damaged since it was opened.
func (l *Log) Damage() DamageStats {
	return DamageStats{Ranges: l.dmgRanges.Load(), Offsets: l.dmgOffsets.Load(), Bytes: l.dmgBytes.Load(), TornTail: l.dmgTorn.Load()}
}

// encodeLostBatch returns a lost batch of exactly size bytes (at least
// batchHeaderSize) for count offsets from base, its payload the note (cut to
// fit) padded with zeros. Its timestamps are the smallest possible, so that
// it never counts for the time index or retention.
func encodeLostBatch(base, count int64, size int, note string) []byte {
	buf := make([]byte, size)
	putHeader(buf, flagLost, int32(count), math.MinInt64, math.MinInt64)
	copy(buf[batchHeaderSize:], note)
	putCRC(buf)
	binary.BigEndian.PutUint64(buf[offBaseOffset:], uint64(base))
	return buf
}

// findNextBatch looks for the first position q >= pos+batchHeaderSize (so that
// a lost batch fits in [pos, q)) at which a whole batch with a matching CRC
// starts whose base offset is above expect and below limit. Cheap header
// checks come first, so that a CRC is computed only for plausible candidates.
//
// The CRC does not cover the base offset, so a candidate's base is checked
// otherwise: the damaged range cannot have held more offsets than bytes
// (every batch format spends at least a byte per offset), and the batch must
// be followed by the end of the data (where a sealed segment's offsets must
// end at limit) or by a batch header with the base offset that continues it.
func findNextBatch(r io.ReaderAt, pos, end, expect, limit int64) (q, base int64, found bool, err error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+batchHeaderSize)
	var raw []byte
	var succ [batchHeaderSize]byte
	be := binary.BigEndian
	for start := pos + batchHeaderSize; start+batchHeaderSize <= end; start += chunk {
		n := min(int64(len(buf)), end-start)
		if m, rerr := r.ReadAt(buf[:n], start); int64(m) < n {
			return 0, 0, false, fmt.Errorf("partitionlog: reading at %d: %w", start, orUnexpectedEOF(rerr))
		}
		for i := int64(0); i < chunk && i+batchHeaderSize <= n; i++ {
			h := buf[i : i+batchHeaderSize]
			count := int64(int32(be.Uint32(h[offCount:])))
			if h[offMagic] != batchMagic || be.Uint16(h[offFlags:])&^knownFlags != 0 || count <= 0 {
				continue
			}
			b := int64(be.Uint64(h[offBaseOffset:]))
			length := int64(int32(be.Uint32(h[offLength:])))
			at := start + i
			if b <= expect || b >= limit || b-expect > at-pos || length < batchHeaderSize-batchLogOverhead || length > maxBatchLength || at+batchLogOverhead+length > end {
				continue
			}
			after := at + batchLogOverhead + length
			switch {
			case after == end:
				if limit != math.MaxInt64 && b+count != limit {
					continue
				}
			case after+batchHeaderSize <= end:
				if _, rerr := r.ReadAt(succ[:], after); rerr != nil && !errors.Is(rerr, io.EOF) {
					return 0, 0, false, fmt.Errorf("partitionlog: reading at %d: %w", after, rerr)
				}
				if int64(be.Uint64(succ[offBaseOffset:])) != b+count {
					continue
				}
			}
			total := int(batchLogOverhead + length)
			if cap(raw) < total {
				raw = make([]byte, total)
			}
			raw = raw[:total]
			if m, rerr := r.ReadAt(raw, at); m < total {
				return 0, 0, false, fmt.Errorf("partitionlog: reading at %d: %w", at, orUnexpectedEOF(rerr))
			}
			if crc32.Checksum(raw[offMagic:], castagnoli) == be.Uint32(raw[offCRC:]) {
				return at, b, true, nil
			}
		}
	}
	return 0, 0, false, nil
}

func orUnexpectedEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// quarantineName is the file that keeps the damaged bytes found at position
// pos of segment base.
func quarantineName(base, pos int64) string {
	return fmt.Sprintf("%020d-%d.quarantine", base, pos)
}

// parseQuarantineName parses a quarantineName.
func parseQuarantineName(name string) (base, pos int64, ok bool) {
	stem, found := strings.CutSuffix(name, ".quarantine")
	b, p, found2 := strings.Cut(stem, "-")
	if !found || !found2 || len(b) != nameDigits {
		return 0, 0, false
	}
	base, err1 := strconv.ParseInt(b, 10, 64)
	pos, err2 := strconv.ParseInt(p, 10, 64)
	return base, pos, err1 == nil && err2 == nil
}

// quarantine copies the n bytes at pos of a segment's log into their
// quarantine file, durably. A quarantine file that already exists is kept:
// it was written by an earlier repair that a crash interrupted, after which
// the range may already be partly overwritten.
func quarantine(dir string, f io.ReaderAt, base, pos, n int64) (string, error) {
	name := quarantineName(base, pos)
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return name, nil
	}
	data := make([]byte, n)
	if m, err := f.ReadAt(data, pos); int64(m) < n {
		return "", fmt.Errorf("partitionlog: quarantining %d bytes at %d: %w", n, pos, orUnexpectedEOF(err))
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, data, 0o644)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("partitionlog: quarantining %d bytes at %d: %w", n, pos, err)
	}
	return name, nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Repair is one damaged range found in a segment: the bytes at Position
// (relative to the segment file) to Position+Bytes, which held offsets From
// to To. Torn marks a torn tail of the active segment (cut off, never
// acknowledged as far as the log can tell); otherwise a lost batch now
// stands for the offsets. Quarantine names the file that keeps the bytes.
type Repair struct {
	Segment    string
	Position   int64
	Bytes      int64
	From, To   int64
	Torn       bool
	Recorded   bool // a lost batch written by an earlier repair (Quarantine holds its note)
	Quarantine string
}

// unrecorded returns the repairs that still need doing.
func unrecorded(rs []Repair) []Repair {
	return slices.DeleteFunc(slices.Clone(rs), func(r Repair) bool { return r.Recorded })
}

// damageScan walks a segment's batches from the start, like recovery does,
// and finds its damaged ranges. With fix set it repairs each one as it goes
// (quarantine, then a lost batch in its place, or a cut torn tail);
// without, it only reports them (dmsd check). sealNext is the next
// segment's base offset, or -1 for the active segment, whose damaged tail
// is a torn write: cut off rather than marked lost. It returns the segment's
// size afterwards. It reads through r and writes through f (nil unless fix).
func damageScan(dir string, r io.ReaderAt, f *os.File, path string, base, size, sealNext int64, kc keyCheck, fix bool) (_ []Repair, newSize int64, _ error) {
	var out []Repair
	pos, expect := int64(0), base
	limit := sealNext
	for {
		sc := newScanner(r, path, pos, size, expect, nil)
		sc.readAhead = 1 << 20
		sc.keys, sc.verified, sc.crcOnly = kc.keys, kc.verified, kc.crcOnly
		var cause error
		for {
			b, err := sc.next()
			if err == io.EOF {
				break
			}
			if err == nil && b.lost() && !fix {
				out = append(out, Repair{Segment: filepath.Base(path), Position: b.pos, Bytes: b.size(), From: b.base, To: b.lastOffset(), Recorded: true,
					Quarantine: strings.TrimRight(string(b.recs), "\x00")})
			}
			if errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEncryptionKey) {
				cause = err
				break
			}
			if err != nil {
				return out, size, err
			}
		}
		pos, expect = sc.pos, sc.expect
		if cause == nil {
			if sealNext >= 0 && expect < sealNext {
				// A sealed segment cut short: its last offsets are missing.
				rp := Repair{Segment: filepath.Base(path), Position: pos, From: expect, To: sealNext - 1}
				if fix {
					note := fmt.Sprintf("offsets %d to %d lost: the segment ended early at position %d", rp.From, rp.To, pos)
					if err := writeLost(f, pos, expect, sealNext-expect, batchHeaderSize+len(note), note); err != nil {
						return out, size, err
					}
					size = pos + int64(batchHeaderSize+len(note))
				}
				out = append(out, rp)
			}
			return out, size, nil
		}
		if limit < 0 {
			limit = math.MaxInt64 // an opaque batch may stand for any number of offsets
		}
		q, nb, found, err := findNextBatch(r, pos, size, expect, limit)
		if err != nil {
			return out, size, err
		}
		rp := Repair{Segment: filepath.Base(path), Position: pos, From: expect}
		switch {
		case found:
			rp.Bytes, rp.To = q-pos, nb-1
		case sealNext < 0:
			rp.Bytes, rp.Torn, rp.To = size-pos, true, expect-1
		default:
			rp.Bytes, rp.To = size-pos, sealNext-1
		}
		if fix {
			name, err := quarantine(dir, r, base, pos, rp.Bytes)
			if err != nil {
				return out, size, err
			}
			rp.Quarantine = name
			note := fmt.Sprintf("offsets %d to %d lost: %d damaged bytes at position %d kept in %s (%v)", rp.From, rp.To, rp.Bytes, pos, name, cause)
			switch {
			case rp.Torn:
				if err := f.Truncate(pos); err != nil {
					return out, size, fmt.Errorf("partitionlog: truncating torn tail of %s: %w", path, err)
				}
				if err := f.Sync(); err != nil {
					return out, size, fmt.Errorf("partitionlog: truncating torn tail of %s: %w", path, err)
				}
				size = pos
			default:
				// In place, exactly over the damaged bytes; a damaged tail
				// too short for a lost batch is overwritten and extended.
				n := max(rp.Bytes, batchHeaderSize)
				if err := writeLost(f, pos, rp.From, rp.To-rp.From+1, int(n), note); err != nil {
					return out, size, err
				}
				size = max(size, pos+n)
			}
		}
		out = append(out, rp)
		if !found {
			return out, size, nil
		}
		if !fix {
			pos, expect = q, nb
		}
		// With fix, scan on from the lost batch just written (it checks).
	}
}

// writeLost writes a lost batch of size bytes at pos, durably.
func writeLost(f *os.File, pos, base, count int64, size int, note string) error {
	if _, err := f.WriteAt(encodeLostBatch(base, count, size, note), pos); err != nil {
		return fmt.Errorf("partitionlog: marking offsets %d to %d lost in %s: %w", base, base+count-1, f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("partitionlog: marking offsets %d to %d lost in %s: %w", base, base+count-1, f.Name(), err)
	}
	return nil
}

// noteLost tells Options.OnLost of a lost range.
func (l *Log) noteLost(from, to int64) {
	if l.opts.OnLost != nil && from <= to {
		l.opts.OnLost(from, to)
	}
}

// lostAt is lostError for a reader, which also tells Options.OnLost.
func (l *Log) lostAt(s *segment, b *batch, from int64) *LostRangeError {
	e := lostError(s, b, from)
	l.noteLost(b.base, e.To)
	return e
}

// reportRepair logs and counts one repaired range.
func (l *Log) reportRepair(r Repair) {
	if l.opts.OnDamage != nil {
		l.opts.OnDamage(r)
	}
	if !r.Torn {
		l.noteLost(r.From, r.To)
	}
	l.dmgBytes.Add(r.Bytes)
	if r.Torn {
		l.dmgTorn.Add(r.Bytes)
		l.logger.Warn("partitionlog: cut off the torn tail of the last segment (an interrupted write, never acknowledged); its bytes are kept",
			"segment", r.Segment, "position", r.Position, "bytes", r.Bytes, "nextOffset", r.From, "quarantine", r.Quarantine)
		return
	}
	l.dmgRanges.Add(1)
	l.dmgOffsets.Add(r.To - r.From + 1)
	l.logger.Error("partitionlog: DAMAGED DATA: offsets are lost; the damaged bytes are kept in a quarantine file and every batch before and after them stays readable",
		"segment", r.Segment, "position", r.Position, "bytes", r.Bytes, "fromOffset", r.From, "toOffset", r.To, "quarantine", r.Quarantine)
}

// nextForRead is scanner.next for the readers: it returns the next batch, or
// an error that ends the read. At the end of the segment's data it returns
// nil, or a LostRangeError if the data ends before the segment's last
// offset (a sealed segment cut short). A scan that started at an index
// position (start > 0) and fails on its first batch starts over from the
// segment's beginning, since the index may be what is damaged. Damaged data
// is reported as a LostRangeError for the offsets up to the next intact batch
// (or the segment's end), unless all of them are below from, in which case
// the scan resumes at that batch. Sealed segments found damaged are repaired
// in the background.
func (l *Log) nextForRead(s *segment, v segView, scp **scanner, start, from int64) (*batch, error) {
	sc := *scp
	for {
		startPos := sc.pos
		b, err := sc.next()
		if err == nil {
			return b, nil
		}
		if err == io.EOF {
			if sc.expect < v.next {
				return nil, l.readerFoundDamage(s, v, sc.pos, &LostRangeError{From: max(sc.expect, from), To: v.next - 1,
					Detail: fmt.Sprintf("segment %s ends at position %d with offset %d, but holds offsets up to %d", s.logPath, sc.pos, sc.expect, v.next-1)})
			}
			return nil, nil
		}
		if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrEncryptionKey) {
			return nil, err
		}
		if start > 0 && startPos == start {
			l.logger.Warn("partitionlog: an index entry does not point at the batch it names; reading the segment from its start", "segment", s.logPath, "position", start, "err", err)
			l.requestRepair(s)
			start = 0
			ns := l.readScanner(s, v, 0, 0, sc.buf)
			ns.decrypt, ns.crcOnly = sc.decrypt, sc.crcOnly // ReadSealedBatches' mode
			*scp = ns
			sc = ns
			continue
		}
		q, nb, found, ferr := findNextBatch(s.log, sc.pos, v.size, sc.expect, v.next)
		if ferr != nil {
			return nil, err
		}
		if found && nb <= from {
			*scp = l.readScanner(s, v, q, nb-s.base, sc.buf)
			sc = *scp
			continue
		}
		to := v.next - 1
		if found {
			to = nb - 1
		}
		return nil, l.readerFoundDamage(s, v, sc.pos, &LostRangeError{From: max(sc.expect, from), To: to, Detail: err.Error()})
	}
}

// readerFoundDamage logs damage a reader found (once per place), counts it
// and starts a repair, then returns lost.
func (l *Log) readerFoundDamage(s *segment, v segView, pos int64, lost *LostRangeError) error {
	type place struct {
		seg string
		pos int64
	}
	if _, seen := l.reported.LoadOrStore(place{s.logPath, pos}, true); !seen {
		l.logger.Error("partitionlog: DAMAGED DATA found by a reader: the offsets are skipped as lost; sealed segments are repaired (the damaged bytes quarantined) in the background, the last one when the log is next opened",
			"segment", s.logPath, "position", pos, "fromOffset", lost.From, "toOffset", lost.To, "err", lost.Detail)
	}
	l.requestRepair(s)
	l.noteLost(lost.From, lost.To)
	return lost
}

// requestRepair queues a sealed segment for a background repair (the last
// segment is repaired when the log is next opened).
func (l *Log) requestRepair(s *segment) {
	l.mu.Lock()
	if l.closed || len(l.segs) == 0 || l.segs[len(l.segs)-1] == s {
		l.mu.Unlock()
		return
	}
	if l.repairQueue == nil {
		l.repairQueue = map[int64]bool{}
	}
	l.repairQueue[s.base] = true
	l.mu.Unlock()
	l.qmu.Lock()
	defer l.qmu.Unlock()
	if l.qclosed || !l.repairing.CompareAndSwap(false, true) {
		return
	}
	l.repairWG.Add(1)
	go func() {
		defer l.repairWG.Done()
		defer l.repairing.Store(false)
		for {
			l.mu.Lock()
			var base int64 = -1
			for b := range l.repairQueue {
				base = b
				delete(l.repairQueue, b)
				break
			}
			l.mu.Unlock()
			if base < 0 {
				return
			}
			if _, err := l.repairSegment(base); err != nil && !errors.Is(err, ErrClosed) {
				l.logger.Error("partitionlog: repairing a damaged segment failed", "segment", segmentFileName(base, logExt), "err", err)
			}
		}
	}()
}

// repairSegment repairs the sealed segment base (if it still exists and is
// sealed): damaged ranges are quarantined and marked lost, and its indexes
// are rebuilt into new files that replace the old ones, so that readers of
// the old state keep consistent files. Readers started before it start over.
func (l *Log) repairSegment(base int64) ([]Repair, error) {
	l.retentionMu.Lock()
	defer l.retentionMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	i := slices.IndexFunc(l.segs, func(s *segment) bool { return s.base == base })
	if i < 0 || i == len(l.segs)-1 {
		l.mu.Unlock()
		return nil, nil // deleted by retention or truncation meanwhile, or active
	}
	old := l.segs[i]
	old.ref()
	v := old.view()
	l.mu.Unlock()
	defer old.unref()

	f, err := os.OpenFile(old.logPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("partitionlog: repairing %s: %w", old.logPath, err)
	}
	defer f.Close()
	kc := keyCheck{keys: l.keys.Load(), verified: map[uint32]bool{}}
	repairs, size, err := damageScan(l.dir, f, f, old.logPath, base, v.size, v.next, kc, true)
	if err != nil {
		return nil, err
	}
	ns, err := l.rebuildSealed(f, base, size, v.next, kc)
	if err != nil {
		return repairs, err
	}
	for _, r := range repairs {
		l.reportRepair(r)
	}
	l.mu.Lock()
	if l.closed || i >= len(l.segs) || l.segs[i] != old {
		l.mu.Unlock()
		ns.unref()
		return repairs, nil
	}
	l.segs[i] = ns
	l.gen.Add(1)
	l.mu.Unlock()
	old.unref() // the list's reference
	return repairs, nil
}

// rebuildSealed writes a sealed segment's indexes to new files, renames them
// over the old ones and opens the segment afresh.
func (l *Log) rebuildSealed(logf *os.File, base, size, next int64, kc keyCheck) (*segment, error) {
	var ib, tb bytes.Buffer
	res, err := scanIndexes(logf, logf.Name(), base, size, int64(l.opts.IndexIntervalBytes), next, kc, &ib, &tb)
	if err != nil {
		return nil, err
	}
	if res.corrupt != nil {
		return nil, fmt.Errorf("partitionlog: %s is still damaged after its repair: %w", logf.Name(), res.corrupt)
	}
	for _, x := range []struct {
		ext  string
		data []byte
	}{{indexExt, ib.Bytes()}, {timeIndexExt, tb.Bytes()}} {
		path := filepath.Join(l.dir, segmentFileName(base, x.ext))
		tmp := path + ".rebuild"
		err := os.WriteFile(tmp, x.data, 0o644)
		if err == nil {
			err = syncFile(tmp)
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("partitionlog: rebuilding the indexes of %s: %w", logf.Name(), err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		return nil, err
	}
	ns, err := openSegmentFiles(l.dir, base, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	ns.size, ns.next, ns.idxN, ns.tidxN, ns.maxTs = size, next, res.idxN, res.tidxN, res.maxTs
	return ns, nil
}

// ScrubResult is what one Scrub pass found.
type ScrubResult struct {
	Segments int64    // sealed segments verified
	Bytes    int64    // bytes of them read
	Repairs  []Repair // damaged ranges found and repaired
	Indexes  int      // segments whose indexes were wrong and were rebuilt
}

// Scrub verifies every sealed segment (the last one is verified whenever the
// log is opened): each batch's CRC and structure, and the indexes against
// the batches, reading at most bytesPerSecond (0: unlimited). It repairs what
// it finds damaged, as a reader finding it would. It stops early with
// ctx.Err() when ctx ends.
func (l *Log) Scrub(ctx context.Context, bytesPerSecond int64) (ScrubResult, error) {
	var out ScrubResult
	after := int64(-1)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return out, ErrClosed
		}
		var s *segment
		for _, c := range l.segs[:len(l.segs)-1] {
			if c.base > after {
				s = c
				break
			}
		}
		if s == nil {
			l.mu.Unlock()
			return out, nil
		}
		s.ref()
		v := s.view()
		l.mu.Unlock()
		after = s.base
		r := &throttledReader{ctx: ctx, r: s.log, perSecond: bytesPerSecond}
		repairs, indexOK, err := l.verifySealed(s, v, r)
		s.unref()
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, err
		}
		out.Segments++
		out.Bytes += v.size
		if len(repairs) == 0 && indexOK {
			continue
		}
		if !indexOK && len(repairs) == 0 {
			l.logger.Warn("partitionlog: scrubbing found wrong index entries; rebuilding them", "segment", s.logPath)
			out.Indexes++
		}
		done, err := l.repairSegment(s.base)
		out.Repairs = append(out.Repairs, done...)
		if err != nil {
			return out, err
		}
	}
}

// verifySealed reads a sealed segment fully through r and reports its
// damaged ranges and whether its indexes are what its batches call for.
func (l *Log) verifySealed(s *segment, v segView, r io.ReaderAt) ([]Repair, bool, error) {
	kc := keyCheck{keys: l.keys.Load(), verified: map[uint32]bool{}}
	repairs, _, err := damageScan(l.dir, r, nil, s.logPath, s.base, v.size, v.next, kc, false)
	for _, rp := range repairs {
		if rp.Recorded {
			l.noteLost(rp.From, rp.To) // lost earlier: a replica may still have it
		}
	}
	if repairs = unrecorded(repairs); err != nil || len(repairs) > 0 {
		return repairs, false, err
	}
	ok, err := indexesMatch(r, s.idx, s.tidx, s.logPath, s.base, v.size, v.next, int64(l.opts.IndexIntervalBytes), kc, v.idxN, v.tidxN)
	return nil, ok, err
}

// indexesMatch reports whether a segment's index files hold exactly the
// entries its batches call for (the first idxN and tidxN entries).
func indexesMatch(r io.ReaderAt, idx, tidx io.ReaderAt, name string, base, size, sealNext, interval int64, kc keyCheck, idxN, tidxN int64) (bool, error) {
	var ib, tb bytes.Buffer
	if _, err := scanIndexes(r, name, base, size, interval, sealNext, kc, &ib, &tb); err != nil {
		return false, err
	}
	for _, x := range []struct {
		f    io.ReaderAt
		want []byte
		n    int64
	}{{idx, ib.Bytes(), idxN * idxEntrySize}, {tidx, tb.Bytes(), tidxN * tidxEntrySize}} {
		if int64(len(x.want)) != x.n {
			return false, nil
		}
		got := make([]byte, x.n)
		if m, err := x.f.ReadAt(got, 0); int64(m) < x.n {
			if err == nil || errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
		if !bytes.Equal(got, x.want) {
			return false, nil
		}
	}
	return true, nil
}

// throttledReader reads at most perSecond bytes per second on average (0:
// no limit) and fails once ctx ends.
type throttledReader struct {
	ctx       context.Context
	r         io.ReaderAt
	perSecond int64
}

func (t *throttledReader) ReadAt(p []byte, off int64) (int, error) {
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := t.r.ReadAt(p, off)
	if t.perSecond > 0 && n > 0 {
		d := time.Duration(int64(n) * int64(time.Second) / t.perSecond)
		select {
		case <-time.After(d):
		case <-t.ctx.Done():
			return n, t.ctx.Err()
		}
	}
	return n, err
}

// AppendLostAt appends a lost batch for count offsets from base, as a
// follower copying a leader whose data for them was lost to damage (and no
// replica has it) must: readers report them with a LostRangeError, as they
// do for damage found here. base must be the log's next offset when the
// writer comes to it (ErrOffsetMismatch otherwise, nothing stored); count is
// 1 to 2^31-1. note says where the loss comes from. A lost batch is never
// encrypted: it holds no data.
func (l *Log) AppendLostAt(ctx context.Context, base, count int64, note string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if base < 0 {
		return fmt.Errorf("%w: base offset %d is negative", ErrOffsetMismatch, base)
	}
	if count < 1 || count > math.MaxInt32 {
		return fmt.Errorf("%w: lost offset count %d not in [1, %d]", ErrInvalidBatch, count, math.MaxInt32)
	}
	if len(note) > 256 {
		note = note[:256]
	}
	bp := batchPool.Get().(*[]byte)
	*bp = append((*bp)[:0], encodeLostBatch(base, count, batchHeaderSize+len(note), note)...)
	r := reqPool.Get().(*appendReq)
	r.ctx, r.buf, r.count, r.maxTs = ctx, bp, count, math.MinInt64
	r.exact, r.at = true, base
	_, err := l.submit(ctx, r)
	return err
}
