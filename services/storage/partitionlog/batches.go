package partitionlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Format tells how the payload of a batch is to be read. It is stored in the
// high byte of the batch header's flags (see doc.go).
type Format uint8

// FormatRecords is this package's own encoding of records (the one Append
// writes): Read and ForEachRecord decode it. Every batch written before
// formats existed is a FormatRecords batch. Any other value marks an opaque
// payload whose meaning belongs to the caller (for example a Kafka record
// batch): the log stores and serves its bytes without parsing them.
const FormatRecords Format = 0

// Batch is one batch handed to AppendBatch or AppendBatchAt: Count records
// with consecutive offsets, stored as Payload.
//
// For FormatRecords, Payload is the records section of the format in doc.go
// (per record: uvarint length, zig-zag varint timestamp delta from
// FirstTimestamp, data), holding exactly Count records, the first with delta
// zero and the largest timestamp equal to MaxTimestamp; AppendBatch checks
// this. For any other format the payload is opaque and only Count >= 1 is
// required; FirstTimestamp and MaxTimestamp are stored as given, and
// MaxTimestamp is what the time index, OffsetForTime and age-based retention
// use for the batch.
type Batch struct {
	Format         Format
	Count          int
	FirstTimestamp int64
	MaxTimestamp   int64
	Payload        []byte
}

// BatchView is one stored batch returned by ReadBatches. Payload is
// decrypted and owned by the caller.
type BatchView struct {
	BaseOffset     int64
	Count          int
	Format         Format
	FirstTimestamp int64
	MaxTimestamp   int64
	Payload        []byte
	// Sealed is, from ReadSealedBatches, an encrypted batch as stored, from
	// its CRC to its end; Payload is then nil.
	Sealed []byte
}

// LastOffset returns the offset of the batch's last record.
func (v BatchView) LastOffset() int64 { return v.BaseOffset + int64(v.Count) - 1 }

// Errors of the batch API.
var (
	ErrInvalidBatch   = errors.New("partitionlog: invalid batch")                    // AppendBatch: a malformed FormatRecords payload, a bad count
	ErrOffsetMismatch = errors.New("partitionlog: batch base offset does not match") // AppendBatchAt: the log's next offset is not the batch's base offset
	ErrOpaqueBatch    = errors.New("partitionlog: opaque batch")                     // Read met a batch that is not FormatRecords; use ReadBatches
)

// AppendBatch appends b as one batch with consecutive offsets and returns the
// offset of its first record. Durability, group commit, encryption,
// cancellation and MaxBatchBytes work as for Append. A FormatRecords payload
// that is not well formed (see Batch), or a Count outside [1, 2^31-1], is
// refused with an error wrapping ErrInvalidBatch and nothing is stored.
//
// The payload is copied (once, into the encoded batch) before AppendBatch
// returns, so the caller may reuse it afterwards.
func (l *Log) AppendBatch(ctx context.Context, b Batch) (baseOffset int64, err error) {
	r, err := l.prepareBatch(ctx, b)
	if err != nil {
		return -1, err
	}
	return l.submit(ctx, r)
}

// AppendBatchAt is AppendBatch for a batch that must get base offset base,
// as a follower copying its leader's batches needs. The writer checks the
// log's next offset when it comes to the batch, after everything queued
// before it; if that is not base, nothing is stored and the error wraps
// ErrOffsetMismatch and says both offsets.
func (l *Log) AppendBatchAt(ctx context.Context, base int64, b Batch) error {
	if base < 0 {
		return fmt.Errorf("%w: base offset %d is negative", ErrOffsetMismatch, base)
	}
	r, err := l.prepareBatch(ctx, b)
	if err != nil {
		return err
	}
	r.exact, r.at = true, base
	_, err = l.submit(ctx, r)
	return err
}

// prepareBatch checks b and encodes it into a queued request.
func (l *Log) prepareBatch(ctx context.Context, b Batch) (*appendReq, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.Count < 1 || b.Count > math.MaxInt32 {
		return nil, fmt.Errorf("%w: record count %d not in [1, %d]", ErrInvalidBatch, b.Count, math.MaxInt32)
	}
	if b.Format == FormatRecords {
		if msg := validateRecords(b.Payload, int32(b.Count), b.FirstTimestamp, b.MaxTimestamp); msg != "" {
			return nil, fmt.Errorf("%w: records payload of %d records: %s", ErrInvalidBatch, b.Count, msg)
		}
	}
	size := batchHeaderSize + len(b.Payload)
	keys := l.keys.Load()
	if keys != nil {
		size += encryptionOverhead
	}
	if size > l.opts.MaxBatchBytes {
		return nil, fmt.Errorf("%w: a batch of %d records with a %d-byte payload encodes to %d bytes, limit is %d",
			ErrBatchTooLarge, b.Count, len(b.Payload), size, l.opts.MaxBatchBytes)
	}
	bp := batchPool.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size, max(size, 512))
	}
	*bp = (*bp)[:size]
	flags := uint16(b.Format) << flagFormatShift
	if keys != nil {
		encodeEncryptedPayload(*bp, flags, b, keys.active, l.nextNonce())
	} else {
		dst := *bp
		putHeader(dst, flags, int32(b.Count), b.FirstTimestamp, b.MaxTimestamp)
		copy(dst[batchHeaderSize:], b.Payload)
		putCRC(dst)
	}
	r := reqPool.Get().(*appendReq)
	r.ctx, r.buf, r.count, r.maxTs = ctx, bp, int64(b.Count), b.MaxTimestamp
	return r, nil
}

// ReadBatches returns whole visible batches in offset order: the first is the
// one holding offset from (so it may start before from), and batches follow
// until their payloads add up to about maxBytes; at least one batch is
// returned if any visible batch holds an offset >= from. Payloads are
// decrypted and do not alias any internal buffer. Visibility, reading at or
// after NextOffset(), reading below StartOffset() (ErrOffsetOutOfRange) and
// damaged data (ErrCorrupt, batches before the damage returned first) work
// as for Read. Batches of every format are returned.
func (l *Log) ReadBatches(from int64, maxBytes int) ([]BatchView, error) {
	return l.readBatches(from, maxBytes, false)
}

// ReadSealedBatches is ReadBatches for a replica: an encrypted batch is
// returned as stored, in BatchView.Sealed (checked by its CRC; neither
// decrypted nor authenticated, which its reader does), for
// AppendSealedBatchAt on another copy. Plaintext batches come with their
// Payload as from ReadBatches. maxBytes counts sealed bytes.
func (l *Log) ReadSealedBatches(from int64, maxBytes int) ([]BatchView, error) {
	return l.readBatches(from, maxBytes, true)
}

// AppendSealedBatchAt stores a batch that ReadSealedBatches returned from
// another copy of the log, byte for byte, at base offset base (as
// AppendBatchAt does; ErrOffsetMismatch otherwise). sealed must be a whole
// encrypted batch from its CRC on with a matching CRC (ErrInvalidBatch
// otherwise). The log must have keys: it will have to open the batch (its
// key need not be in the ring yet; a reader checks that).
func (l *Log) AppendSealedBatchAt(ctx context.Context, base int64, sealed []byte) error {
	if base < 0 {
		return fmt.Errorf("%w: base offset %d is negative", ErrOffsetMismatch, base)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.keys.Load() == nil {
		return fmt.Errorf("%w: a sealed batch for a log opened without encryption keys", ErrEncryptionKey)
	}
	size := offCRC + len(sealed)
	if size < encHeaderSize+tagSize || size > l.opts.MaxBatchBytes {
		return fmt.Errorf("%w: a sealed batch of %d bytes (at least %d, at most %d)", ErrInvalidBatch, size, encHeaderSize+tagSize, l.opts.MaxBatchBytes)
	}
	be := binary.BigEndian
	if got, want := crc32.Checksum(sealed[offMagic-offCRC:], castagnoli), be.Uint32(sealed); got != want {
		return fmt.Errorf("%w: sealed batch checksum mismatch (stored %08x, computed %08x)", ErrInvalidBatch, want, got)
	}
	flags, count := be.Uint16(sealed[offFlags-offCRC:]), int32(be.Uint32(sealed[offCount-offCRC:]))
	switch {
	case sealed[offMagic-offCRC] != batchMagic:
		return fmt.Errorf("%w: sealed batch of magic %d", ErrInvalidBatch, sealed[offMagic-offCRC])
	case flags&flagEncrypted == 0 || flags&flagLost != 0 || flags&^knownFlags != 0:
		return fmt.Errorf("%w: a sealed batch with flags %#x", ErrInvalidBatch, flags)
	case count < 1:
		return fmt.Errorf("%w: record count %d", ErrInvalidBatch, count)
	}
	bp := batchPool.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size, max(size, 512))
	}
	*bp = (*bp)[:size]
	dst := *bp
	be.PutUint64(dst[offBaseOffset:], 0)
	be.PutUint32(dst[offLength:], uint32(size-batchLogOverhead))
	copy(dst[offCRC:], sealed)
	r := reqPool.Get().(*appendReq)
	r.ctx, r.buf, r.count, r.maxTs = ctx, bp, int64(count), int64(be.Uint64(dst[offMaxTs:]))
	r.exact, r.at = true, base
	_, err := l.submit(ctx, r)
	return err
}

func (l *Log) readBatches(from int64, maxBytes int, sealed bool) ([]BatchView, error) {
	bp := getScanBuf()
	defer putScanBuf(bp)
	orig := from
	for {
		gen := l.gen.Load()
		var out []BatchView
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
			out, used, done, err = l.readSegmentBatches(s, v, from, maxBytes, out, used, bp, sealed)
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

// readSegmentBatches appends the batches of s from the one holding offset
// from. done reports that the byte budget is exhausted.
func (l *Log) readSegmentBatches(s *segment, v segView, from int64, maxBytes int, out []BatchView, used int, bp *[]byte, sealed bool) (_ []BatchView, _ int, done bool, _ error) {
	pos, atRel, err := lookupOffset(s.idx, v.idxN, from-s.base)
	if err != nil {
		return out, used, false, err
	}
	if pos >= v.size {
		pos, atRel = 0, 0 // defensive: never trust an entry past the visible end
	}
	sc := l.readScanner(s, v, pos, atRel, *bp)
	if sealed {
		sc.decrypt, sc.crcOnly = false, true
	}
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
		n := max(len(b.recs), 1)
		keepSealed := sealed && b.flags&flagEncrypted != 0
		if keepSealed {
			n = len(b.raw) - offCRC
		}
		if len(out) > 0 && (maxBytes <= 0 || used+n > maxBytes) {
			return out, used, true, nil
		}
		bv := BatchView{
			BaseOffset:     b.base,
			Count:          int(b.count),
			Format:         b.format(),
			FirstTimestamp: b.firstTs,
			MaxTimestamp:   b.maxTs,
		}
		if keepSealed {
			bv.Sealed = append([]byte(nil), b.raw[offCRC:]...)
		} else {
			bv.Payload = append([]byte(nil), b.recs...)
		}
		out = append(out, bv)
		used += n
		if maxBytes <= 0 || used >= maxBytes {
			return out, used, true, nil
		}
	}
}

// ForEachRecord calls fn for every record of a FormatRecords batch, in order,
// until fn returns false. data aliases v.Payload. It fails (calling fn for
// nothing) with an error wrapping ErrOpaqueBatch for another format, and
// with one wrapping ErrInvalidBatch for a payload that is not exactly
// v.Count well-formed records consistent with the batch's timestamps.
func ForEachRecord(v BatchView, fn func(offset, timestamp int64, data []byte) bool) error {
	if v.Format != FormatRecords {
		return fmt.Errorf("%w: offsets %d to %d hold a batch of format %d, not records", ErrOpaqueBatch, v.BaseOffset, v.LastOffset(), v.Format)
	}
	if v.Count < 1 || v.Count > math.MaxInt32 {
		return fmt.Errorf("%w: record count %d", ErrInvalidBatch, v.Count)
	}
	if msg := validateRecords(v.Payload, int32(v.Count), v.FirstTimestamp, v.MaxTimestamp); msg != "" {
		return fmt.Errorf("%w: batch at offset %d: %s", ErrInvalidBatch, v.BaseOffset, msg)
	}
	b := batch{base: v.BaseOffset, count: int32(v.Count), firstTs: v.FirstTimestamp, recs: v.Payload}
	b.forEachRecord(fn)
	return nil
}

// opaqueError is what Read returns for a batch it cannot decode.
func opaqueError(b *batch) error {
	return fmt.Errorf("%w: offsets %d to %d hold a batch of format %d, which Read cannot decode (use ReadBatches)",
		ErrOpaqueBatch, b.base, b.lastOffset(), b.format())
}

// encodeEncryptedPayload encodes b like prepareBatch does for plaintext,
// then seals the payload with key k (see encodeEncryptedBatch).
func encodeEncryptedPayload(dst []byte, flags uint16, b Batch, k *keyEntry, nonce [nonceSize]byte) {
	putHeader(dst, flags|flagEncrypted, int32(b.Count), b.FirstTimestamp, b.MaxTimestamp)
	binary.BigEndian.PutUint32(dst[offKeyID:], k.id)
	copy(dst[offNonce:], nonce[:])
	plain := dst[encHeaderSize : len(dst)-tagSize]
	copy(plain, b.Payload)
	k.aead.Seal(plain[:0], nonce[:], plain, dst[offMagic:encHeaderSize])
	putCRC(dst)
}
