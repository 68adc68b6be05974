package partitionlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Record batch layout (big-endian fixed fields); see doc.go.
const (
	offBaseOffset = 0  // int64
	offLength     = 8  // int32: number of bytes that follow this field
	offCRC        = 12 // uint32: CRC32C of bytes [offMagic, end)
	offMagic      = 16 // uint8
	offFlags      = 17 // uint16
	offCount      = 19 // int32
	offFirstTs    = 23 // int64
	offMaxTs      = 31 // int64

	batchHeaderSize  = 39 // bytes before the first record
	batchLogOverhead = 12 // baseOffset + length: bytes not counted by length

	batchMagic byte = 1

	// flagEncrypted: the records are sealed with AES-256-GCM (encryption.go).
	flagEncrypted uint16 = 1 << 0
	// The high byte of flags is the batch's Format. Batches written before
	// formats existed have flags 0 or 1, so they read as FormatRecords.
	flagFormatShift        = 8
	flagFormatMask  uint16 = 0xff << flagFormatShift
	knownFlags             = flagEncrypted | flagLost | flagFormatMask

	// maxBatchLength bounds the length field accepted when reading, so that a
	// corrupt length never causes a huge allocation.
	maxBatchLength = maxMaxBatchBytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodedBatchSize returns the encoded size of a batch holding recs.
func encodedBatchSize(recs []Record) int {
	n := batchHeaderSize
	first := recs[0].Timestamp
	for i := range recs {
		l := len(recs[i].Data)
		n += uvarintLen(uint64(l)) + varintLen(recs[i].Timestamp-first) + l
	}
	return n
}

// encodeBatch encodes recs into dst (len(dst) == encodedBatchSize(recs)),
// leaving the base offset zero: the writer patches it in when it assigns
// offsets, which does not invalidate the CRC. It returns the max timestamp.
func encodeBatch(dst []byte, recs []Record) (maxTs int64) {
	maxTs = putBatch(dst, recs, batchHeaderSize, 0, 0)
	putCRC(dst)
	return maxTs
}

// putHeader writes the header fields that follow the CRC (and the length),
// leaving the base offset zero.
func putHeader(dst []byte, flags uint16, count int32, firstTs, maxTs int64) {
	be := binary.BigEndian
	be.PutUint64(dst[offBaseOffset:], 0)
	be.PutUint32(dst[offLength:], uint32(len(dst)-batchLogOverhead))
	dst[offMagic] = batchMagic
	be.PutUint16(dst[offFlags:], flags)
	be.PutUint32(dst[offCount:], uint32(count))
	be.PutUint64(dst[offFirstTs:], uint64(firstTs))
	be.PutUint64(dst[offMaxTs:], uint64(maxTs))
}

// putBatch writes the header fields (all but the CRC) and the records, which
// start at recStart and are followed by trailer unwritten bytes.
func putBatch(dst []byte, recs []Record, recStart int, flags uint16, trailer int) (maxTs int64) {
	first := recs[0].Timestamp
	maxTs = first
	p := recStart
	for i := range recs {
		r := &recs[i]
		if r.Timestamp > maxTs {
			maxTs = r.Timestamp
		}
		p += binary.PutUvarint(dst[p:], uint64(len(r.Data)))
		p += binary.PutVarint(dst[p:], r.Timestamp-first)
		p += copy(dst[p:], r.Data)
	}
	if p+trailer != len(dst) {
		panic("partitionlog: batch buffer size mismatch")
	}
	putHeader(dst, flags, int32(len(recs)), first, maxTs)
	return maxTs
}

func putCRC(dst []byte) {
	binary.BigEndian.PutUint32(dst[offCRC:], crc32.Checksum(dst[offMagic:], castagnoli))
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// batch is a decoded, verified view of one record batch. raw and recs alias
// the scanner's buffer and are only valid until the scanner's next call.
type batch struct {
	pos     int64 // file position of the batch
	base    int64
	count   int32
	flags   uint16
	firstTs int64
	maxTs   int64
	raw     []byte // the whole batch, header included (records decrypted in place)
	recs    []byte // the records (or opaque payload); nil for an encrypted batch the scanner did not open
}

func (b *batch) format() Format { return Format(b.flags >> flagFormatShift) }

func (b *batch) size() int64       { return int64(len(b.raw)) }
func (b *batch) next() int64       { return b.base + int64(b.count) }
func (b *batch) lastOffset() int64 { return b.base + int64(b.count) - 1 }

// forEachRecord calls fn for every record of a verified FormatRecords batch; fn returning
// false stops the iteration. data aliases b.raw.
func (b *batch) forEachRecord(fn func(off, ts int64, data []byte) bool) {
	p := 0
	for i := int32(0); i < b.count; i++ {
		l, n := binary.Uvarint(b.recs[p:])
		p += n
		d, n := binary.Varint(b.recs[p:])
		p += n
		if !fn(b.base+int64(i), b.firstTs+d, b.recs[p:p+int(l)]) {
			return
		}
		p += int(l)
	}
}

// validateRecords checks the records of a batch whose CRC matched (and tag,
// if encrypted): exactly count well-formed records filling the batch, the
// first with delta zero and the maximum timestamp equal to the header's.
func validateRecords(raw []byte, count int32, firstTs, maxTs int64) string {
	p := 0
	seenMax := int64(math.MinInt64)
	for i := int32(0); i < count; i++ {
		l, n := binary.Uvarint(raw[p:])
		if n <= 0 {
			return "bad record length"
		}
		p += n
		d, n := binary.Varint(raw[p:])
		if n <= 0 {
			return "bad record timestamp"
		}
		p += n
		if i == 0 && d != 0 {
			return "first record timestamp delta is not zero"
		}
		if l > uint64(len(raw)-p) {
			return "record overruns batch"
		}
		p += int(l)
		if ts := firstTs + d; ts > seenMax {
			seenMax = ts
		}
	}
	if p != len(raw) {
		return "trailing bytes after last record"
	}
	if seenMax != maxTs {
		return "max timestamp mismatch"
	}
	return ""
}

// scanner reads and verifies consecutive batches of one segment file between
// two positions, reading ahead in large chunks.
type scanner struct {
	r         io.ReaderAt
	name      string // file name for errors
	pos       int64  // position of the next batch
	end       int64  // scanning stops here
	expect    int64  // base offset the next batch must have
	readAhead int

	// Encrypted batches: readers set decrypt and get every batch opened;
	// recovery, which needs only headers, sets verified and gets only the
	// first batch per key id opened, so that a wrong key fails Open.
	keys     *Keyring
	decrypt  bool
	verified map[uint32]bool
	// crcOnly: encrypted batches are checked by their CRC alone (an offline
	// check without the keys).
	crcOnly bool
	// segNext is one past the segment's last offset when known (readers), so
	// that errors can say which offsets are unreadable; -1 otherwise.
	segNext int64

	buf    []byte
	bufPos int64 // file position of buf[0]
	cur    batch
}

func newScanner(r io.ReaderAt, name string, pos, end, expect int64, buf []byte) *scanner {
	return &scanner{r: r, name: name, pos: pos, end: end, expect: expect, readAhead: 64 << 10, segNext: -1, buf: buf[:0], bufPos: pos}
}

func (s *scanner) corrupt(format string, args ...any) error {
	where := fmt.Sprintf("expected offset %d", s.expect)
	if s.segNext > s.expect {
		where = fmt.Sprintf("offsets %d to %d unreadable", s.expect, s.segNext-1)
	}
	return fmt.Errorf("%w: segment %s: batch at position %d (%s): %s",
		ErrCorrupt, s.name, s.pos, where, fmt.Sprintf(format, args...))
}

// window returns the n bytes at s.pos, reading ahead if needed. The caller
// guarantees s.pos+n <= s.end.
func (s *scanner) window(n int) ([]byte, error) {
	if s.pos >= s.bufPos && s.pos+int64(n) <= s.bufPos+int64(len(s.buf)) {
		o := int(s.pos - s.bufPos)
		return s.buf[o : o+n], nil
	}
	want := max(n, s.readAhead)
	if rem := s.end - s.pos; int64(want) > rem {
		want = int(rem)
	}
	if cap(s.buf) < want {
		s.buf = make([]byte, want)
	}
	s.buf = s.buf[:want]
	s.bufPos = s.pos
	if m, err := s.r.ReadAt(s.buf, s.pos); m < want {
		s.buf = s.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("partitionlog: reading %s at %d: %w", s.name, s.pos, err)
	}
	return s.buf[:n], nil
}

// next returns the next verified batch, io.EOF at the end, an error wrapping
// ErrCorrupt for a torn or damaged batch, or an I/O error.
func (s *scanner) next() (*batch, error) {
	rem := s.end - s.pos
	if rem == 0 {
		return nil, io.EOF
	}
	if rem < batchHeaderSize {
		return nil, s.corrupt("truncated header (%d bytes left)", rem)
	}
	hdr, err := s.window(batchHeaderSize)
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	length := int64(int32(be.Uint32(hdr[offLength:])))
	if length < batchHeaderSize-batchLogOverhead || length > maxBatchLength {
		return nil, s.corrupt("invalid length %d", length)
	}
	total := batchLogOverhead + length
	if total > rem {
		return nil, s.corrupt("truncated batch (length %d, %d bytes left)", total, rem)
	}
	raw, err := s.window(int(total))
	if err != nil {
		return nil, err
	}
	if got, want := crc32.Checksum(raw[offMagic:], castagnoli), be.Uint32(raw[offCRC:]); got != want {
		return nil, s.corrupt("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	if raw[offMagic] != batchMagic {
		return nil, s.corrupt("unsupported magic %d", raw[offMagic])
	}
	b := &s.cur
	*b = batch{
		pos:     s.pos,
		base:    int64(be.Uint64(raw[offBaseOffset:])),
		count:   int32(be.Uint32(raw[offCount:])),
		flags:   be.Uint16(raw[offFlags:]),
		firstTs: int64(be.Uint64(raw[offFirstTs:])),
		maxTs:   int64(be.Uint64(raw[offMaxTs:])),
		raw:     raw,
	}
	if b.count <= 0 {
		return nil, s.corrupt("invalid record count %d", b.count)
	}
	if b.base != s.expect {
		return nil, s.corrupt("base offset %d out of sequence", b.base)
	}
	if b.flags&^knownFlags != 0 || (b.flags&flagLost != 0 && b.flags != flagLost) {
		return nil, s.corrupt("unsupported flags %#x", b.flags)
	}
	b.recs = raw[batchHeaderSize:]
	if b.flags == flagLost {
		// A lost batch's payload is a note; readers report its offsets lost.
		s.pos += total
		s.expect = b.next()
		return b, nil
	}
	if b.flags&flagEncrypted != 0 {
		if err := s.open(b); err != nil {
			return nil, err
		}
	}
	// An opaque payload belongs to the caller: the CRC (and tag) are all
	// that can be checked.
	if b.recs != nil && b.format() == FormatRecords {
		if msg := validateRecords(b.recs, b.count, b.firstTs, b.maxTs); msg != "" {
			return nil, s.corrupt("%s", msg)
		}
	}
	s.pos += total
	s.expect = b.next()
	return b, nil
}

// open checks that the key of an encrypted batch is known and, if the
// scanner's mode asks for it, authenticates and decrypts the records in place.
// A missing or wrong key is reported as a keyError, never as a torn batch, so
// that recovery fails instead of truncating data it cannot read.
func (s *scanner) open(b *batch) error {
	b.recs = nil
	if s.crcOnly {
		return nil
	}
	if len(b.raw) < encHeaderSize+tagSize {
		return s.corrupt("encrypted batch too short (%d bytes)", len(b.raw))
	}
	id := binary.BigEndian.Uint32(b.raw[offKeyID:])
	if s.keys == nil {
		return keyError{s.corrupt("encrypted with key id %d, but the log was opened without encryption keys", id)}
	}
	aead, ok := s.keys.Lookup(id)
	if !ok && s.keys.crcOnlyFrom != 0 && id >= s.keys.crcOnlyFrom {
		return nil
	}
	if !ok {
		return keyError{s.corrupt("encrypted with key id %d, which is not in the keyring", id)}
	}
	if !s.decrypt && (s.verified == nil || s.verified[id]) {
		return nil
	}
	recs, err := openBatch(b.raw, aead)
	if err != nil {
		return keyError{s.corrupt("key id %d does not authenticate the batch (wrong key for that id, or tampered data)", id)}
	}
	if s.verified != nil {
		s.verified[id] = true
	}
	b.recs = recs
	return nil
}
