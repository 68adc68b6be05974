package partitionlog

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// encodeTestSegment encodes batches (given as record payload lists) as a
// segment starting at offset 0.
func encodeTestSegment(batches ...[]string) []byte {
	var out []byte
	next := int64(0)
	for bi, b := range batches {
		recs := make([]Record, len(b))
		for i, d := range b {
			recs[i] = Record{Timestamp: int64(1000*bi + 7*i - 3), Data: []byte(d)}
		}
		buf := make([]byte, encodedBatchSize(recs))
		encodeBatch(buf, recs)
		binary.BigEndian.PutUint64(buf, uint64(next))
		next += int64(len(recs))
		out = append(out, buf...)
	}
	return out
}

type refEntry struct {
	off, ts int64
	data    string
}

// refBatch is a batch as an independent decoder sees it.
type refBatch struct {
	base, count    int64
	format         Format
	firstTs, maxTs int64
	payload        string
}

// refLog is what referenceDecode accepts of a segment.
type refLog struct {
	batches  []refBatch
	recs     []refEntry // the records of the FormatRecords batches
	readRecs []refEntry // those before the first opaque batch (what Read returns)
}

func (r refLog) next() int64 {
	if len(r.batches) == 0 {
		return 0
	}
	b := r.batches[len(r.batches)-1]
	return b.base + b.count
}

// referenceDecode decodes the valid prefix of a segment independently of the
// scanner: contiguous offsets from 0, matching CRC, known flags (bit 0
// encrypted, bits 8-15 the format), well-formed records in FormatRecords
// batches; encrypted batches are opened with aead (key id 1) if it is given.
// keyStop reports that decoding stopped at an intact encrypted batch that
// cannot be opened (no keys, unknown key id or failed tag), which the log
// must report as ErrEncryptionKey rather than as a torn tail.
func referenceDecode(data []byte, aead cipher.AEAD) (out refLog, keyStop bool) {
	next := int64(0)
	opaqueSeen := false
	for len(data) >= batchHeaderSize {
		be := binary.BigEndian
		length := int64(int32(be.Uint32(data[8:])))
		if length < batchHeaderSize-12 || 12+length > int64(len(data)) {
			break
		}
		b := data[:12+length]
		if crc32.Checksum(b[16:], crc32.MakeTable(crc32.Castagnoli)) != be.Uint32(b[12:]) || b[16] != 1 {
			break
		}
		base, flags, count := int64(be.Uint64(b)), be.Uint16(b[17:]), int64(int32(be.Uint32(b[19:])))
		firstTs, maxTs := int64(be.Uint64(b[23:])), int64(be.Uint64(b[31:]))
		if base != next || count <= 0 || flags&^0xff01 != 0 {
			break
		}
		format := Format(flags >> 8)
		p := b[39:]
		if flags&1 != 0 {
			if len(b) < 39+4+12+16 {
				break
			}
			if aead == nil || be.Uint32(b[39:]) != 1 {
				return out, true
			}
			plain, err := aead.Open(nil, b[43:55], b[55:], b[16:55])
			if err != nil {
				return out, true
			}
			p = plain
		}
		payload := string(p)
		var recs []refEntry
		if format == FormatRecords {
			ok, seenMax := true, int64(-1<<63)
			for i := range count {
				l, n := binary.Uvarint(p)
				if n <= 0 {
					ok = false
					break
				}
				p = p[n:]
				d, n := binary.Varint(p)
				if n <= 0 || (i == 0 && d != 0) || l > uint64(len(p)-n) {
					ok = false
					break
				}
				p = p[n:]
				recs = append(recs, refEntry{base + i, firstTs + d, string(p[:l])})
				seenMax = max(seenMax, firstTs+d)
				p = p[l:]
			}
			if !ok || len(p) != 0 || seenMax != maxTs {
				break
			}
		} else {
			opaqueSeen = true
		}
		out.batches = append(out.batches, refBatch{base, count, format, firstTs, maxTs, payload})
		out.recs = append(out.recs, recs...)
		if !opaqueSeen {
			out.readRecs = append(out.readRecs, recs...)
		}
		next += count
		data = data[12+length:]
	}
	return out, false
}

// refOffsetForTimeBatches is OffsetForTime over reference batches (an opaque
// batch counts as one record with its max timestamp at its base offset).
func refOffsetForTimeBatches(r refLog, ts int64) int64 {
	ri := 0
	for _, b := range r.batches {
		if b.format != FormatRecords {
			if b.maxTs >= ts {
				return b.base
			}
			continue
		}
		for ; ri < len(r.recs) && r.recs[ri].off < b.base+b.count; ri++ {
			if r.recs[ri].ts >= ts {
				return r.recs[ri].off
			}
		}
	}
	return r.next()
}

func toRefBatches(bs []BatchView) []refBatch {
	var out []refBatch
	for _, b := range bs {
		out = append(out, refBatch{b.BaseOffset, int64(b.Count), b.Format, b.FirstTimestamp, b.MaxTimestamp, string(b.Payload)})
	}
	return out
}

// encodeBatchesTestSegment encodes batches from offset 0 as AppendBatch
// would, sealed with keys if it is not nil (nonces from the batch index).
func encodeBatchesTestSegment(keys *Keyring, batches ...Batch) []byte {
	var out []byte
	next := int64(0)
	for i, b := range batches {
		flags := uint16(b.Format) << flagFormatShift
		var buf []byte
		if keys != nil {
			buf = make([]byte, batchHeaderSize+len(b.Payload)+encryptionOverhead)
			var nonce [nonceSize]byte
			nonce[1] = byte(i)
			encodeEncryptedPayload(buf, flags, b, keys.active, nonce)
		} else {
			buf = make([]byte, batchHeaderSize+len(b.Payload))
			putHeader(buf, flags, int32(b.Count), b.FirstTimestamp, b.MaxTimestamp)
			copy(buf[batchHeaderSize:], b.Payload)
			putCRC(buf)
		}
		binary.BigEndian.PutUint64(buf, uint64(next))
		next += int64(b.Count)
		out = append(out, buf...)
	}
	return out
}

// mixedTestBatches are records and opaque batches for the fuzz seeds.
func mixedTestBatches() []Batch {
	return []Batch{
		recordsBatch([]Record{{Timestamp: 5, Data: []byte("a")}, {Timestamp: 9, Data: []byte("bb")}}),
		{Format: 1, Count: 3, FirstTimestamp: 10, MaxTimestamp: 12, Payload: []byte("kafka-batch-bytes")},
		{Format: 255, Count: 1, FirstTimestamp: 20, MaxTimestamp: 15},
		recordsBatch([]Record{{Timestamp: 30, Data: []byte("after")}}),
		{Format: 2, Count: 2, FirstTimestamp: 40, MaxTimestamp: 41, Payload: make([]byte, 300)},
	}
}

func toRef(es []Entry) []refEntry {
	var out []refEntry
	for _, e := range es {
		out = append(out, refEntry{e.Offset, e.Timestamp, string(e.Data)})
	}
	return out
}

// FuzzSegmentReader feeds arbitrary bytes as a segment file to the scanner,
// to crash recovery (as the last segment) and to the reader (as an older,
// unscanned segment). Nothing may panic, and everything returned must be
// exactly what an independent decoder accepts as CRC-valid.
func FuzzSegmentReader(f *testing.F) {
	valid := encodeTestSegment([]string{"a", "bb", ""}, []string{"hello"}, []string{string(make([]byte, 300)), "x"})
	f.Add(valid, false)
	f.Add(valid, true)
	f.Add(valid[:len(valid)-1], false)
	f.Add(valid[:50], true)
	flipped := bytes.Clone(valid)
	flipped[60] ^= 4
	f.Add(flipped, false)
	f.Add(flipped, true)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 100), true)
	f.Add(bytes.Repeat([]byte{0xff}, 64), false)
	enc := encodeEncryptedTestSegment(fuzzKey(), []string{"a", "bb"}, []string{"secret"})
	f.Add(enc, false)
	f.Add(enc, true)
	mixed := encodeBatchesTestSegment(nil, mixedTestBatches()...)
	f.Add(mixed, false)
	f.Add(mixed, true)
	badFlag := bytes.Clone(mixed)
	putFlags(badFlag, 0, 1<<4) // an unknown flag bit outside the format byte
	f.Add(badFlag, false)
	opaqueFirst := bytes.Clone(valid)
	putFlags(opaqueFirst, 0, 7<<8) // records bytes relabelled as format 7
	f.Add(opaqueFirst, false)

	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		checkSegmentBytes(t, data, sealed, nil)
	})
}

// FuzzEncryptedSegmentReader is FuzzSegmentReader for a log with a keyring:
// encrypted batches are returned only if they authenticate.
func FuzzEncryptedSegmentReader(f *testing.F) {
	key := fuzzKey()
	valid := encodeEncryptedTestSegment(key, []string{"a", "bb", ""}, []string{"hello"}, []string{string(make([]byte, 300)), "x"})
	f.Add(valid, false)
	f.Add(valid, true)
	f.Add(valid[:len(valid)-1], false)
	flipped := bytes.Clone(valid)
	flipped[60] ^= 4
	f.Add(flipped, false)
	mixed := append(encodeTestSegment([]string{"plain"}), encodeEncryptedTestSegmentFrom(key, 1, []string{"sealed", "too"})...)
	f.Add(mixed, false)
	f.Add(mixed, true)
	opaque := encodeBatchesTestSegment(mustKeyring(f, key), mixedTestBatches()...)
	f.Add(opaque, false)
	f.Add(opaque, true)

	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		checkSegmentBytes(t, data, sealed, mustKeyring(t, key))
	})
}

func fuzzKey() Key { return testKey(1, 42) }

// encodeEncryptedTestSegment is encodeTestSegment with every batch sealed.
func encodeEncryptedTestSegment(key Key, batches ...[]string) []byte {
	return encodeEncryptedTestSegmentFrom(key, 0, batches...)
}

func encodeEncryptedTestSegmentFrom(key Key, next int64, batches ...[]string) []byte {
	ring, err := NewKeyring(key)
	if err != nil {
		panic(err)
	}
	var out []byte
	for bi, b := range batches {
		recs := make([]Record, len(b))
		for i, d := range b {
			recs[i] = Record{Timestamp: int64(1000*bi + 7*i - 3), Data: []byte(d)}
		}
		buf := make([]byte, encodedBatchSize(recs)+encryptionOverhead)
		var nonce [nonceSize]byte
		nonce[0] = byte(bi)
		encodeEncryptedBatch(buf, recs, ring.active, nonce)
		binary.BigEndian.PutUint64(buf, uint64(next))
		next += int64(len(recs))
		out = append(out, buf...)
	}
	return out
}

func checkSegmentBytes(t *testing.T, data []byte, sealed bool, keys *Keyring) {
	var aead cipher.AEAD
	if keys != nil {
		aead, _ = keys.Lookup(1)
	}
	want, keyStop := referenceDecode(data, aead)

	// The scanner alone.
	sc := newScanner(bytes.NewReader(data), "fuzz.log", 0, int64(len(data)), 0, nil)
	sc.keys, sc.decrypt = keys, true
	var got []refEntry
	var gotBatches []refBatch
	for {
		b, err := sc.next()
		if err != nil {
			if err != io.EOF && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error type: %v", err)
			}
			require.Equal(t, keyStop, errors.Is(err, ErrEncryptionKey), "scanner error %v", err)
			break
		}
		if b.lost() {
			break // the reference decoder stops at lost batches as at damage
		}
		gotBatches = append(gotBatches, refBatch{b.base, int64(b.count), b.format(), b.firstTs, b.maxTs, string(b.recs)})
		if b.format() == FormatRecords {
			b.forEachRecord(func(off, ts int64, d []byte) bool {
				got = append(got, refEntry{off, ts, string(d)})
				return true
			})
		}
	}
	require.Equal(t, want.recs, got)
	require.Equal(t, want.batches, gotBatches)

	// As a log directory.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(0, logExt)), data, 0o644))
	const sealedNext = 1 << 20
	if sealed {
		// Followed by an empty active segment: the fuzzed one is not
		// scanned by recovery, only (re)indexed and read.
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(sealedNext, logExt)), nil, 0o644))
	}
	l, err := Open(Options{Dir: dir, Logger: quietLogger(), IndexIntervalBytes: 16, Keys: keys})
	if keyStop {
		// An intact batch the keyring cannot open: Open refuses the log
		// (its indexes are rebuilt from a full scan here) and cuts nothing.
		require.ErrorIs(t, err, ErrEncryptionKey)
		after, rerr := os.ReadFile(filepath.Join(dir, segmentFileName(0, logExt)))
		require.NoError(t, rerr)
		require.Equal(t, data, after)
		return
	}
	require.NoError(t, err)
	defer l.Close()
	var read []Entry
	from := int64(0)
	for from < l.NextOffset() {
		es, err := l.Read(from, 64)
		if err != nil {
			if !errors.Is(err, ErrLost) {
				require.ErrorIs(t, err, ErrOpaqueBatch)
			}
			break
		}
		if len(es) == 0 {
			break
		}
		read = append(read, es...)
		from = es[len(es)-1].Offset + 1
	}
	var batches []BatchView
	for from := int64(0); from < l.NextOffset(); {
		bs, err := l.ReadBatches(from, 64)
		if err != nil {
			require.ErrorIs(t, err, ErrLost)
			break
		}
		if len(bs) == 0 {
			break
		}
		batches = append(batches, bs...)
		from = bs[len(bs)-1].LastOffset() + 1
	}
	if sealed {
		require.Equal(t, want.readRecs, toRef(read)[:min(len(read), len(want.readRecs))])
		require.LessOrEqual(t, len(read), len(want.readRecs))
		require.Equal(t, want.batches, toRefBatches(batches)[:min(len(batches), len(want.batches))])
		require.LessOrEqual(t, len(batches), len(want.batches))
	} else {
		// Recovery keeps intact batches after damage, so the log may go on
		// past where the reference decoder stops.
		require.GreaterOrEqual(t, l.NextOffset(), want.next())
		require.Equal(t, want.readRecs, toRef(read))
		require.Equal(t, want.batches, toRefBatches(batches))
		fi, err := os.Stat(filepath.Join(dir, segmentFileName(0, logExt)))
		require.NoError(t, err)
		require.LessOrEqual(t, fi.Size(), int64(len(data)))
	}
	// Past lost ranges, whatever is read is batches of the input: nothing
	// is invented, and every read ends or reports a lost range.
	for from := int64(0); from < l.NextOffset(); {
		bs, err := l.ReadBatches(from, 64)
		var le *LostRangeError
		if errors.As(err, &le) {
			require.Equal(t, from, le.From)
			require.GreaterOrEqual(t, le.To, from)
			from = le.To + 1
			continue
		}
		require.NoError(t, err)
		require.NotEmpty(t, bs)
		for _, b := range bs {
			if keys == nil {
				require.True(t, bytes.Contains(data, b.Payload), "batch at %d is not in the input", b.BaseOffset)
			}
		}
		from = bs[len(bs)-1].LastOffset() + 1
	}
	for _, ts := range []int64{-1 << 63, 0, 1000, 1 << 62} {
		off, err := l.OffsetForTime(ts)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			continue
		}
		if !sealed && l.NextOffset() == want.next() {
			require.Equal(t, refOffsetForTimeBatches(want, ts), off)
		}
	}
}
