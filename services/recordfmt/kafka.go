package recordfmt

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Kafka record batches (magic 2) are stored exactly as a producer sent
// them, compressed or not. A native reader gets each Kafka record as a
// message: the value is the body, the key the ordering key, the headers
// the attributes (string values), except a header named dms.tags, whose
// comma-separated value is the tags. The Kafka front end maps the other
// way when it serves native batches to Kafka consumers (see
// services/kafka/records.go).

// TagsHeader is the Kafka header that carries a message's tags, separated
// by commas.
const TagsHeader = "dms.tags"

// KeyEncodingAttribute marks a message whose Kafka key was not UTF-8: its
// ordering key is then the key in standard base64, and this attribute says
// so ("base64"). Header values that are not UTF-8 are given in base64 the
// same way, named in the attribute dms.kafka.base64-headers
// (comma-separated).
const (
	KeyEncodingAttribute     = "dms.kafka.key-encoding"
	Base64HeadersAttribute   = "dms.kafka.base64-headers"
	maxDecompressedBatchSize = 64 << 20
)

// The Kafka record batch header (magic 2): 61 bytes.
const (
	KafkaBatchHeaderSize = 61
	kafkaOffLength       = 8
	kafkaOffMagic        = 16
	kafkaOffCRC          = 17
	kafkaOffAttributes   = 21
	// The CRC covers everything after itself, so that a broker may set the
	// base offset and the partition leader epoch without recomputing it.
	kafkaCRCStart = 21
)

// Kafka batch attribute bits.
const (
	KafkaCodecMask      = 0x07
	KafkaTransactional  = 0x10
	KafkaControl        = 0x20
	kafkaLogAppendTime  = 0x08
	kafkaCodecNone      = 0
	kafkaCodecGzip      = 1
	kafkaCodecSnappy    = 2
	kafkaCodecLz4       = 3
	kafkaCodecZstd      = 4
	kafkaCodecMaxKnown  = kafkaCodecZstd
	kafkaAttributesMask = KafkaCodecMask | kafkaLogAppendTime | KafkaTransactional | KafkaControl
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// KafkaBatchCRC returns the CRC-32C a Kafka batch must carry (over the
// bytes after the CRC field).
func KafkaBatchCRC(data []byte) uint32 { return crc32.Checksum(data[kafkaCRCStart:], castagnoli) }

// ErrKafkaBatch is wrapped by every error about a malformed Kafka batch.
var ErrKafkaBatch = errors.New("recordfmt: malformed Kafka record batch")

// ParseKafkaBatch checks that data is exactly one whole Kafka record batch
// of magic 2 with a matching CRC and returns its header (Records holds the
// record section, still compressed).
func ParseKafkaBatch(data []byte) (kmsg.RecordBatch, error) {
	var b kmsg.RecordBatch
	if len(data) < KafkaBatchHeaderSize {
		return b, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrKafkaBatch, len(data), KafkaBatchHeaderSize)
	}
	if data[kafkaOffMagic] != 2 {
		return b, fmt.Errorf("%w: magic %d; only magic 2 (Kafka 0.11+) batches are taken", ErrKafkaBatch, int8(data[kafkaOffMagic]))
	}
	if l := int64(int32(binary.BigEndian.Uint32(data[kafkaOffLength:]))); l != int64(len(data)-12) {
		return b, fmt.Errorf("%w: the batch length field says %d bytes and the batch has %d", ErrKafkaBatch, l, len(data)-12)
	}
	if want, got := KafkaBatchCRC(data), binary.BigEndian.Uint32(data[kafkaOffCRC:]); want != got {
		return b, fmt.Errorf("%w: CRC-32C %08x, the bytes give %08x", ErrKafkaBatch, got, want)
	}
	if err := b.ReadFrom(data); err != nil {
		return b, fmt.Errorf("%w: %v", ErrKafkaBatch, err)
	}
	switch {
	case b.NumRecords < 1:
		return b, fmt.Errorf("%w: %d records", ErrKafkaBatch, b.NumRecords)
	case b.LastOffsetDelta != b.NumRecords-1:
		return b, fmt.Errorf("%w: last offset delta %d with %d records", ErrKafkaBatch, b.LastOffsetDelta, b.NumRecords)
	case b.Attributes&KafkaCodecMask > kafkaCodecMaxKnown:
		return b, fmt.Errorf("%w: compression codec %d is not gzip, snappy, lz4 or zstd", ErrKafkaBatch, b.Attributes&KafkaCodecMask)
	case b.Attributes&^kafkaAttributesMask != 0:
		return b, fmt.Errorf("%w: unknown attribute bits %#x", ErrKafkaBatch, b.Attributes&^kafkaAttributesMask)
	}
	return b, nil
}

// KafkaRecords decompresses a parsed batch's records and decodes them; it
// fails unless the record section holds exactly NumRecords records with
// the offset deltas 0, 1, 2, ...
func KafkaRecords(b *kmsg.RecordBatch) ([]kmsg.Record, error) {
	var recs []kmsg.Record
	_, _, err := eachKafkaRecord(b, func(r *kmsg.Record) {
		if recs == nil {
			recs = make([]kmsg.Record, 0, b.NumRecords)
		}
		c := *r
		// The record's headers slice is reused by the next decode.
		c.Headers = slices.Clone(r.Headers)
		recs = append(recs, c)
	})
	return recs, err
}

// CheckKafkaRecords is KafkaRecords for a caller that only needs to know
// the records are well formed: it keeps none of them.
func CheckKafkaRecords(b *kmsg.RecordBatch) error {
	_, _, err := eachKafkaRecord(b, func(*kmsg.Record) {})
	return err
}

// CheckKafkaRecordsLargest is CheckKafkaRecords that also returns the
// largest record's encoded length and index, for a per-message size limit.
func CheckKafkaRecordsLargest(b *kmsg.RecordBatch) (size, index int, err error) {
	return eachKafkaRecord(b, func(*kmsg.Record) {})
}

// eachKafkaRecord decodes a batch's records one at a time into one
// kmsg.Record and calls fn with each (fn must copy what it keeps). It
// returns the largest record's encoded length and index.
func eachKafkaRecord(b *kmsg.RecordBatch, fn func(*kmsg.Record)) (largest, largestAt int, err error) {
	raw, err := decompress(b.Records, b.Attributes&KafkaCodecMask)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrKafkaBatch, err)
	}
	var r kmsg.Record
	for i := int32(0); i < b.NumRecords; i++ {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || int64(len(raw)-n) < l {
			return 0, 0, fmt.Errorf("%w: record %d of %d is truncated", ErrKafkaBatch, i, b.NumRecords)
		}
		if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
			return 0, 0, fmt.Errorf("%w: record %d: %v", ErrKafkaBatch, i, err)
		}
		if r.OffsetDelta != i {
			return 0, 0, fmt.Errorf("%w: record %d has offset delta %d", ErrKafkaBatch, i, r.OffsetDelta)
		}
		if int(l) > largest {
			largest, largestAt = int(l), int(i)
		}
		fn(&r)
		raw = raw[n+int(l):]
	}
	if len(raw) != 0 {
		return 0, 0, fmt.Errorf("%w: %d bytes after the last of %d records", ErrKafkaBatch, len(raw), b.NumRecords)
	}
	return largest, largestAt, nil
}

// xerialPrefix starts snappy data in the xerial framing Java clients
// write; franz-go and librdkafka write bare snappy blocks.
var xerialPrefix = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompress undoes a batch's compression, refusing output beyond
// maxDecompressedBatchSize so that a small batch cannot make the server
// allocate without bound.
func decompress(src []byte, codec int16) ([]byte, error) {
	limited := func(r io.Reader) ([]byte, error) {
		out, err := io.ReadAll(io.LimitReader(r, maxDecompressedBatchSize+1))
		if err != nil {
			return nil, err
		}
		if len(out) > maxDecompressedBatchSize {
			return nil, fmt.Errorf("records decompress to more than %d bytes", maxDecompressedBatchSize)
		}
		return out, nil
	}
	switch codec {
	case kafkaCodecNone:
		return src, nil
	case kafkaCodecGzip:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		out, err := limited(zr)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return out, nil
	case kafkaCodecSnappy:
		if !bytes.HasPrefix(src, xerialPrefix) {
			return snappyBlock(src, nil)
		}
		// 8 bytes of prefix, 8 of versions, then chunks of a 4-byte length
		// and a snappy block.
		if len(src) < 16 {
			return nil, errors.New("snappy: truncated xerial header")
		}
		var out []byte
		for rest := src[16:]; len(rest) > 0; {
			if len(rest) < 4 {
				return nil, errors.New("snappy: truncated xerial chunk length")
			}
			n := int(binary.BigEndian.Uint32(rest))
			if n < 0 || n > len(rest)-4 {
				return nil, errors.New("snappy: xerial chunk longer than the data")
			}
			var err error
			if out, err = snappyBlock(rest[4:4+n], out); err != nil {
				return nil, err
			}
			rest = rest[4+n:]
		}
		return out, nil
	case kafkaCodecLz4:
		out, err := limited(lz4.NewReader(bytes.NewReader(src)))
		if err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
		return out, nil
	case kafkaCodecZstd:
		zr, err := zstd.NewReader(bytes.NewReader(src), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressedBatchSize))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		out, err := limited(zr)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// snappyBlock appends one decoded snappy block to out.
func snappyBlock(block, out []byte) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > maxDecompressedBatchSize-len(out) {
		return nil, fmt.Errorf("snappy: records decompress to more than %d bytes", maxDecompressedBatchSize)
	}
	dec, err := s2.Decode(nil, block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(out, dec...), nil
}

// kafkaIDSpace is the UUID namespace of the message ids given to Kafka
// records, which carry none: an id is derived from the batch's CRC, its
// producer and the record's offset, so that every read of a record gives
// it the same id.
var kafkaIDSpace = uuid.MustParse("6b61666b-612d-4d53-8e7c-9a3f1e2d4c5b")

// decodeKafka reads the records of a Kafka record batch (magic 2) as a
// producer sent it, as messages.
func decodeKafka(sb *storagev1.RecordBatch, from int64, limit int, out []*storagev1.StoredRecord) ([]*storagev1.StoredRecord, error) {
	b, err := ParseKafkaBatch(sb.GetData())
	if err != nil {
		return out, fmt.Errorf("recordfmt: batch at offset %d: %w", sb.GetBaseOffset(), err)
	}
	if b.Attributes&KafkaControl != 0 {
		return out, nil // markers of transactions, not messages
	}
	recs, err := KafkaRecords(&b)
	if err != nil {
		return out, fmt.Errorf("recordfmt: batch at offset %d: %w", sb.GetBaseOffset(), err)
	}
	taken := 0
	var seed [20]byte
	binary.BigEndian.PutUint32(seed[0:], uint32(b.CRC))
	binary.BigEndian.PutUint64(seed[4:], uint64(b.ProducerID))
	for i := range recs {
		r := &recs[i]
		offset := sb.GetBaseOffset() + int64(r.OffsetDelta)
		if offset < from {
			continue
		}
		ts := b.FirstTimestamp + r.TimestampDelta64
		if b.Attributes&kafkaLogAppendTime != 0 {
			ts = b.MaxTimestamp
		}
		binary.BigEndian.PutUint64(seed[12:], uint64(offset))
		out = append(out, &storagev1.StoredRecord{Offset: offset, Record: &storagev1.Record{
			TimestampMs: ts, MessageId: uuid.NewSHA1(kafkaIDSpace, seed[:]).String(), Message: KafkaMessage(r),
		}})
		taken++
		if limit > 0 && taken >= limit {
			break
		}
	}
	return out, nil
}

// KafkaMessage returns a Kafka record as a message.
func KafkaMessage(r *kmsg.Record) *dmsv1.Message {
	m := &dmsv1.Message{Body: r.Value}
	if m.Body == nil {
		m.Body = []byte{}
	}
	attr := func(name, value string) {
		if m.Attributes == nil {
			m.Attributes = map[string]*dmsv1.AttributeValue{}
		}
		m.Attributes[name] = &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_StringValue{StringValue: value}}
	}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			m.OrderingKey = string(r.Key)
		} else {
			m.OrderingKey = base64.StdEncoding.EncodeToString(r.Key)
			attr(KeyEncodingAttribute, "base64")
		}
	}
	var encoded []string
	for _, h := range r.Headers {
		if !utf8.ValidString(h.Key) {
			continue // not a name any API can show
		}
		if h.Key == TagsHeader && utf8.Valid(h.Value) {
			for t := range strings.SplitSeq(string(h.Value), ",") {
				if t = strings.TrimSpace(t); t != "" {
					m.Tags = append(m.Tags, t)
				}
			}
			continue
		}
		if utf8.Valid(h.Value) {
			attr(h.Key, string(h.Value))
		} else {
			attr(h.Key, base64.StdEncoding.EncodeToString(h.Value))
			encoded = append(encoded, h.Key)
		}
	}
	if len(encoded) > 0 {
		attr(Base64HeadersAttribute, strings.Join(encoded, ","))
	}
	return m
}
