package partitionlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

const (
	logExt       = ".log"
	indexExt     = ".index"
	timeIndexExt = ".timeindex"
	nameDigits   = 20
)

func segmentFileName(base int64, ext string) string {
	return fmt.Sprintf("%020d%s", base, ext)
}

// parseSegmentFileName parses "<20 digits><ext>" for one of the known
// extensions.
func parseSegmentFileName(name string) (base int64, ext string, ok bool) {
	ext = filepath.Ext(name)
	switch ext {
	case logExt, indexExt, timeIndexExt:
	default:
		return 0, "", false
	}
	stem := strings.TrimSuffix(name, ext)
	if len(stem) != nameDigits {
		return 0, "", false
	}
	for _, c := range stem {
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	base, err := strconv.ParseInt(stem, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return base, ext, true
}

// segment is one log file with its two sparse index files.
//
// Lifetime: the Log's segment list holds one reference; readers take another
// while they use the files. Files are closed when the last reference is
// dropped, so retention can unlink a segment while it is being read.
type segment struct {
	base    int64
	logPath string
	log     *os.File
	idx     *os.File
	tidx    *os.File
	refs    atomic.Int32

	// Published (visible) state, guarded by Log.mu.
	size  int64 // visible bytes of the log file
	next  int64 // one past the last visible offset
	idxN  int64 // visible offset index entries
	tidxN int64 // visible time index entries
	maxTs int64 // max timestamp of the visible records; math.MinInt64 if none

	// Write state of the active segment, owned by the writer goroutine (and by
	// Open/Close when the writer is not running).
	w writeState
}

type writeState struct {
	size     int64 // bytes written and kept
	next     int64 // next offset to assign
	idxSize  int64 // bytes of the offset index
	tidxSize int64 // bytes of the time index
	sinceIdx int64 // batch bytes since the last index entry
	maxTs    int64
	// dirtyTail: a failed write may have left bytes past size (or a failed
	// fsync left an unknown state). They must be truncated away (and the
	// truncation fsynced) before anything else is written.
	dirtyTail bool
}

func (s *segment) ref() { s.refs.Add(1) }

func (s *segment) unref() {
	if s.refs.Add(-1) == 0 {
		s.closeFiles()
	}
}

func (s *segment) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{s.log, s.idx, s.tidx} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *segment) paths() []string {
	dir := filepath.Dir(s.logPath)
	return []string{
		s.logPath, // the log first: orphaned indexes are cleaned up by Open
		filepath.Join(dir, segmentFileName(s.base, indexExt)),
		filepath.Join(dir, segmentFileName(s.base, timeIndexExt)),
	}
}

// publish makes the segment's write state ws visible to readers. Caller holds
// Log.mu.
func (s *segment) publish(ws writeState) {
	s.size = ws.size
	s.next = ws.next
	s.idxN = ws.idxSize / idxEntrySize
	s.tidxN = ws.tidxSize / tidxEntrySize
	s.maxTs = ws.maxTs
}

func openSegmentFiles(dir string, base int64, logFlag int) (*segment, error) {
	s := &segment{base: base, logPath: filepath.Join(dir, segmentFileName(base, logExt)), maxTs: math.MinInt64}
	s.refs.Store(1)
	var err error
	if s.log, err = os.OpenFile(s.logPath, logFlag, 0o644); err != nil {
		return nil, fmt.Errorf("partitionlog: opening segment: %w", err)
	}
	idxFlag := os.O_RDWR | os.O_CREATE | (logFlag & os.O_TRUNC)
	if s.idx, err = os.OpenFile(filepath.Join(dir, segmentFileName(base, indexExt)), idxFlag, 0o644); err == nil {
		s.tidx, err = os.OpenFile(filepath.Join(dir, segmentFileName(base, timeIndexExt)), idxFlag, 0o644)
	}
	if err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("partitionlog: opening index: %w", err)
	}
	return s, nil
}

// createSegment creates a new, empty active segment.
func createSegment(dir string, base int64) (*segment, error) {
	s, err := openSegmentFiles(dir, base, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		for _, p := range (&segment{base: base, logPath: filepath.Join(dir, segmentFileName(base, logExt))}).paths() {
			os.Remove(p)
		}
		return nil, err
	}
	s.next, s.w.next = base, base
	s.w.maxTs = math.MinInt64
	return s, nil
}

// scanResult describes the valid prefix of a segment found by indexSegment.
type scanResult struct {
	end      int64 // end of the last good batch
	next     int64 // next offset after the last good batch
	idxN     int64
	tidxN    int64
	sinceIdx int64
	maxTs    int64
	corrupt  error // why the scan stopped before the end of the file, if it did
}

// keyCheck is what Open needs to check encrypted batches: the keyring (nil:
// encryption off) and the key ids already proven to authenticate a batch, so
// that each key is tried once per Open rather than once per batch.
type keyCheck struct {
	keys     *Keyring
	verified map[uint32]bool
	crcOnly  bool // no keys at hand: encrypted batches are checked by CRC only
}

// indexSegment scans the log from the start to end, verifying every batch, and
// rewrites both index files from it. It stops at the first torn or corrupt
// batch (reported in corrupt, not as an error); a batch whose key is missing
// or wrong is an error, since the data is intact and must not be cut off. If
// sealNext >= 0 a sealing time index entry for a segment ending at offset
// sealNext is appended and the indexes are fsynced.
func indexSegment(s *segment, end int64, interval int64, sealNext int64, kc keyCheck) (scanResult, error) {
	for _, f := range []*os.File{s.idx, s.tidx} {
		if err := f.Truncate(0); err != nil {
			return scanResult{}, fmt.Errorf("partitionlog: rebuilding index: %w", err)
		}
	}
	iw := bufio.NewWriterSize(io.NewOffsetWriter(s.idx, 0), 32<<10)
	tw := bufio.NewWriterSize(io.NewOffsetWriter(s.tidx, 0), 32<<10)
	res, err := scanIndexes(s.log, s.logPath, s.base, end, interval, sealNext, kc, iw, tw)
	if err != nil {
		return res, err
	}
	if err := errors.Join(iw.Flush(), tw.Flush()); err != nil {
		return res, fmt.Errorf("partitionlog: rebuilding index: %w", err)
	}
	if sealNext >= 0 {
		if err := errors.Join(s.idx.Sync(), s.tidx.Sync()); err != nil {
			return res, fmt.Errorf("partitionlog: rebuilding index: %w", err)
		}
	}
	return res, nil
}

// scanIndexes scans a segment's log from the start to end, verifying every
// batch, and writes the index entries it should have to iw and tw (with the
// sealing time index entry if sealNext >= 0). See indexSegment.
func scanIndexes(r io.ReaderAt, name string, base, end, interval, sealNext int64, kc keyCheck, iw, tw io.Writer) (scanResult, error) {
	res := scanResult{next: base, maxTs: math.MinInt64}
	var ebuf [tidxEntrySize]byte
	sc := newScanner(r, name, 0, end, base, nil)
	sc.readAhead = 1 << 20
	sc.keys, sc.verified, sc.crcOnly = kc.keys, kc.verified, kc.crcOnly
	for {
		b, err := sc.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEncryptionKey) {
			res.corrupt = err
			break
		}
		if err != nil {
			return res, err
		}
		if res.sinceIdx >= interval {
			rel := uint32(b.base - base)
			iw.Write(putIdxEntry(ebuf[:0], rel, uint32(b.pos)))
			tw.Write(putTidxEntry(ebuf[:0], res.maxTs, rel))
			res.idxN++
			res.tidxN++
			res.sinceIdx = 0
		}
		res.sinceIdx += b.size()
		res.maxTs = max(res.maxTs, b.maxTs)
		res.end = sc.pos
		res.next = b.next()
	}
	if sealNext >= 0 {
		tw.Write(putTidxEntry(ebuf[:0], res.maxTs, uint32(sealNext-base)))
		res.tidxN++
	}
	return res, nil
}

// recoverActiveSegment opens the last segment of the log and verifies it batch
// by batch. Damage followed by valid batches is quarantined and marked lost
// (see damageScan); a damaged tail (a torn write) is quarantined and cut
// off. Its indexes are then rebuilt. It reports what it repaired and, when
// the segment's old offset index named a batch beyond the recovered end (a
// file cut short), that batch's offset (-1 otherwise).
func recoverActiveSegment(dir string, base int64, interval int64, kc keyCheck) (_ *segment, repairs []Repair, indexedBeyond int64, _ error) {
	s, err := openSegmentFiles(dir, base, os.O_RDWR)
	if err != nil {
		return nil, nil, -1, err
	}
	fail := func(err error) (*segment, []Repair, int64, error) {
		s.closeFiles()
		return nil, nil, -1, err
	}
	fi, err := s.log.Stat()
	if err != nil {
		return fail(fmt.Errorf("partitionlog: recovering segment: %w", err))
	}
	lastRel, lastPos, hasLast := lastIndexEntry(s.idx)
	size := fi.Size()
	res, err := indexSegment(s, size, interval, -1, kc)
	if err != nil {
		return fail(err)
	}
	if res.corrupt != nil {
		// Rare: only now pay for a second scan, which repairs.
		if repairs, size, err = damageScan(dir, s.log, s.log, s.logPath, base, size, -1, kc, true); err != nil {
			return fail(err)
		}
		if res, err = indexSegment(s, size, interval, -1, kc); err != nil {
			return fail(err)
		}
		if res.corrupt != nil || res.end != size {
			return fail(fmt.Errorf("partitionlog: %s is still damaged after its repair: %w", s.logPath, res.corrupt))
		}
	}
	indexedBeyond = -1
	torn := len(repairs) > 0 && repairs[len(repairs)-1].Torn
	if hasLast && !torn && lastPos >= res.end && base+lastRel >= res.next {
		indexedBeyond = base + lastRel
	}
	s.w = writeState{
		size:     res.end,
		next:     res.next,
		idxSize:  res.idxN * idxEntrySize,
		tidxSize: res.tidxN * tidxEntrySize,
		sinceIdx: res.sinceIdx,
		maxTs:    res.maxTs,
	}
	s.publish(s.w)
	return s, repairs, indexedBeyond, nil
}

// lastIndexEntry returns the last whole entry of an offset index file.
func lastIndexEntry(f *os.File) (rel, pos int64, ok bool) {
	fi, err := f.Stat()
	if err != nil || fi.Size() < idxEntrySize {
		return 0, 0, false
	}
	n := fi.Size() / idxEntrySize
	e, err := readEntries(f, idxEntrySize, n-1, n, nil)
	if err != nil {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint32(e)), int64(binary.BigEndian.Uint32(e[4:])), true
}

// openSealedSegment opens a segment that is followed by another one starting
// at nextBase. Its data was fsynced when it was rolled, so it is not scanned;
// only its indexes are checked cheaply and rebuilt if they look inconsistent,
// and its first batch is checked against the keyring.
func openSealedSegment(dir string, base, nextBase int64, interval int64, kc keyCheck) (s *segment, rebuilt bool, corrupt error, err error) {
	s, err = openSegmentFiles(dir, base, os.O_RDONLY)
	if err != nil {
		return nil, false, nil, err
	}
	fi, err := s.log.Stat()
	if err != nil {
		s.closeFiles()
		return nil, false, nil, fmt.Errorf("partitionlog: opening segment: %w", err)
	}
	size := fi.Size()
	if err := checkFirstBatchKey(s, size, kc); err != nil {
		s.closeFiles()
		return nil, false, nil, err
	}
	idxN, tidxN, maxTs, ok := checkSealedIndexes(s, size, nextBase)
	if !ok {
		res, err := indexSegment(s, size, interval, nextBase, kc)
		if err != nil {
			s.closeFiles()
			return nil, false, nil, err
		}
		idxN, tidxN, maxTs, corrupt, rebuilt = res.idxN, res.tidxN, res.maxTs, res.corrupt, true
	}
	s.size, s.next, s.idxN, s.tidxN, s.maxTs = size, nextBase, idxN, tidxN, maxTs
	return s, rebuilt, corrupt, nil
}

// checkFirstBatchKey fails if the first batch of a sealed segment is encrypted
// with a key that is missing from the keyring or does not authenticate it: the
// cheap check that catches a wrong or missing key at Open for data sealed in
// older segments. It reads only the batch header unless the batch is
// encrypted with a key id not yet verified. Any other damage of that batch is
// left for readers to report.
func checkFirstBatchKey(s *segment, size int64, kc keyCheck) error {
	var hdr [encHeaderSize]byte
	n, _ := s.log.ReadAt(hdr[:], 0)
	if n < batchHeaderSize || binary.BigEndian.Uint16(hdr[offFlags:])&flagEncrypted == 0 {
		return nil
	}
	if n == encHeaderSize && kc.keys != nil && kc.verified[binary.BigEndian.Uint32(hdr[offKeyID:])] {
		return nil
	}
	// Read and verify the whole batch: a missing key is reported only for a
	// batch whose CRC proves that its header is intact.
	sc := newScanner(s.log, s.logPath, 0, size, s.base, nil)
	sc.readAhead = encHeaderSize
	sc.keys, sc.verified = kc.keys, kc.verified
	if _, err := sc.next(); errors.Is(err, ErrEncryptionKey) {
		return err
	}
	return nil
}

// checkSealedIndexes does O(1) consistency checks of a sealed segment's
// indexes: whole entries, a final sealing time index entry, matching entry
// counts and a last offset index entry that points at the batch it names.
func checkSealedIndexes(s *segment, size, nextBase int64) (idxN, tidxN, maxTs int64, ok bool) {
	ifi, err1 := s.idx.Stat()
	tfi, err2 := s.tidx.Stat()
	if err1 != nil || err2 != nil || ifi.Size()%idxEntrySize != 0 || tfi.Size()%tidxEntrySize != 0 {
		return 0, 0, 0, false
	}
	idxN, tidxN = ifi.Size()/idxEntrySize, tfi.Size()/tidxEntrySize
	count := nextBase - s.base
	if tidxN == 0 || tidxN-1 != idxN || count < 0 || count > math.MaxUint32 {
		return 0, 0, 0, false
	}
	e, err := readEntries(s.tidx, tidxEntrySize, tidxN-1, tidxN, nil)
	if err != nil || int64(binary.BigEndian.Uint32(e[8:])) != count {
		return 0, 0, 0, false
	}
	maxTs = int64(binary.BigEndian.Uint64(e))
	if idxN > 0 {
		e, err := readEntries(s.idx, idxEntrySize, idxN-1, idxN, nil)
		if err != nil {
			return 0, 0, 0, false
		}
		rel, pos := int64(binary.BigEndian.Uint32(e)), int64(binary.BigEndian.Uint32(e[4:]))
		if rel >= count || pos+batchHeaderSize > size {
			return 0, 0, 0, false
		}
		var hdr [batchLogOverhead]byte
		if _, err := s.log.ReadAt(hdr[:], pos); err != nil {
			return 0, 0, 0, false
		}
		length := int64(int32(binary.BigEndian.Uint32(hdr[offLength:])))
		if int64(binary.BigEndian.Uint64(hdr[:])) != s.base+rel || length < batchHeaderSize-batchLogOverhead || pos+batchLogOverhead+length > size {
			return 0, 0, 0, false
		}
	}
	return idxN, tidxN, maxTs, true
}
