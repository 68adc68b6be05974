package partitionlog

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Sparse index files. Both hold fixed-width big-endian entries in increasing
// order and are searched with positioned reads (pread) directly from the file,
// so no per-record state is ever held in memory.
//
//	.index      relOffset uint32, position uint32    (8 bytes)
//	.timeindex  timestamp int64,  relOffset uint32   (12 bytes)
//
// An offset index entry (r, p) says the batch with base offset base+r starts
// at file position p. A time index entry (t, r) says every record of the
// segment with offset < base+r has a timestamp <= t, and t is the maximum of
// those timestamps; sealed segments end with an entry whose relOffset is the
// segment's record count, so t is the segment's max timestamp.
const (
	idxEntrySize  = 8
	tidxEntrySize = 12

	// searchChunkEntries: once a binary search narrows to this many entries,
	// the rest is read with one pread and finished in memory.
	searchChunkEntries = 256
)

func putIdxEntry(dst []byte, rel uint32, pos uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, rel)
	return binary.BigEndian.AppendUint32(dst, pos)
}

func putTidxEntry(dst []byte, ts int64, rel uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return binary.BigEndian.AppendUint32(dst, rel)
}

// readEntries reads entries [lo, hi) of a fixed-width index file.
func readEntries(f *os.File, width int, lo, hi int64, buf []byte) ([]byte, error) {
	n := int((hi - lo) * int64(width))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := f.ReadAt(buf, lo*int64(width))
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("partitionlog: reading index %s: %w", f.Name(), err)
	}
	return buf, nil
}

// searchIndex returns the largest i in [0, n) for which pred(entry i) is
// true, or -1, together with that entry's bytes; pred must be true for a
// prefix of the entries.
func searchIndex(f *os.File, width int, n int64, pred func(e []byte) bool) (int64, []byte, error) {
	lo, hi := int64(0), n // invariant: entries < lo satisfy pred, entries >= hi do not
	var one [tidxEntrySize]byte
	for hi-lo > searchChunkEntries {
		mid := lo + (hi-lo)/2
		e, err := readEntries(f, width, mid, mid+1, one[:0])
		if err != nil {
			return 0, nil, err
		}
		if pred(e) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if hi > lo {
		chunk, err := readEntries(f, width, lo, hi, nil)
		if err != nil {
			return 0, nil, err
		}
		k := int64(0)
		for k < hi-lo && pred(chunk[k*int64(width):(k+1)*int64(width)]) {
			k++
		}
		if k > 0 {
			return lo + k - 1, chunk[(k-1)*int64(width) : k*int64(width)], nil
		}
	}
	i := lo - 1
	if i < 0 {
		return -1, nil, nil
	}
	e, err := readEntries(f, width, i, i+1, one[:0])
	return i, e, err
}

// lookupOffset returns the position and relative offset of the last indexed
// batch whose base offset is <= base+rel, among the first n entries; (0, 0)
// if there is none.
func lookupOffset(f *os.File, n int64, rel int64) (pos int64, atRel int64, err error) {
	i, e, err := searchIndex(f, idxEntrySize, n, func(e []byte) bool {
		return int64(binary.BigEndian.Uint32(e)) <= rel
	})
	if err != nil || i < 0 {
		return 0, 0, err
	}
	return int64(binary.BigEndian.Uint32(e[4:])), int64(binary.BigEndian.Uint32(e)), nil
}

// lookupTime returns the relative offset of the last time index entry (among
// the first n) whose timestamp is < ts, or 0 if there is none: no record of
// the segment before that offset has a timestamp >= ts.
func lookupTime(f *os.File, n int64, ts int64) (int64, error) {
	i, e, err := searchIndex(f, tidxEntrySize, n, func(e []byte) bool {
		return int64(binary.BigEndian.Uint64(e)) < ts
	})
	if err != nil || i < 0 {
		return 0, err
	}
	return int64(binary.BigEndian.Uint32(e[8:])), nil
}
