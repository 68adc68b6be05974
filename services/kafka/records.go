package kafka

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/recordfmt"
)

// Batches reach Kafka consumers as Kafka record batches (magic 2). A batch
// a Kafka producer wrote is served as stored, with its base offset set to
// where storage put it (the CRC does not cover it, which is why Kafka puts
// it there); a native batch (messages sent through the DMS APIs) is
// encoded as one uncompressed Kafka batch holding the same offsets:
// ordering key → record key, body → value, attributes → headers (strings
// as they are, numbers in decimal, booleans as true/false, in name order),
// tags → one header dms.tags with the tags joined by commas. recordfmt
// maps Kafka records back to messages the same way.

// Offsets of fields of the batch header that Fetch rewrites.
const (
	batchOffBaseOffset  = 0
	batchOffLeaderEpoch = 12
)

// appendKafkaBatch appends a stored batch to dst as a Kafka record batch.
func appendKafkaBatch(dst []byte, b *storagev1.RecordBatch) ([]byte, error) {
	switch b.GetFormat() {
	case storagev1.BatchFormat_BATCH_FORMAT_KAFKA:
		data := b.GetData()
		if len(data) < recordfmt.KafkaBatchHeaderSize {
			return dst, fmt.Errorf("kafka: stored batch at offset %d is %d bytes, shorter than a batch header", b.GetBaseOffset(), len(data))
		}
		start := len(dst)
		dst = append(dst, data...)
		binary.BigEndian.PutUint64(dst[start+batchOffBaseOffset:], uint64(b.GetBaseOffset()))
		// The epoch the producer put there means nothing here (franz-go
		// sends -1, Sarama 0); -1 tells consumers not to validate their
		// position by it.
		binary.BigEndian.PutUint32(dst[start+batchOffLeaderEpoch:], math.MaxUint32)
		return dst, nil
	case storagev1.BatchFormat_BATCH_FORMAT_NATIVE:
		recs, err := recordfmt.Decode(b, b.GetBaseOffset(), 0, nil)
		if err != nil {
			return dst, err
		}
		return appendNativeAsKafka(dst, recs), nil
	}
	return dst, fmt.Errorf("kafka: stored batch at offset %d has format %d, which Kafka consumers cannot be served", b.GetBaseOffset(), b.GetFormat())
}

// appendNativeAsKafka encodes native records (consecutive offsets) as one
// uncompressed Kafka record batch.
func appendNativeAsKafka(dst []byte, recs []*storagev1.StoredRecord) []byte {
	if len(recs) == 0 {
		return dst
	}
	first := recs[0]
	kb := kmsg.RecordBatch{
		FirstOffset: first.GetOffset(), PartitionLeaderEpoch: -1, Magic: 2,
		FirstTimestamp: first.GetRecord().GetTimestampMs(), MaxTimestamp: first.GetRecord().GetTimestampMs(),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		LastOffsetDelta: int32(recs[len(recs)-1].GetOffset() - first.GetOffset()), NumRecords: int32(len(recs)),
	}
	var body, scratch []byte
	for _, sr := range recs {
		ts := sr.GetRecord().GetTimestampMs()
		kb.MaxTimestamp = max(kb.MaxTimestamp, ts)
		r := kafkaRecord(sr.GetRecord().GetMessage())
		r.TimestampDelta64 = ts - kb.FirstTimestamp
		r.OffsetDelta = int32(sr.GetOffset() - first.GetOffset())
		// The record's length prefix counts what follows it: encode with a
		// zero length (one byte) and put the real one in front.
		scratch = r.AppendTo(scratch[:0])
		body = kbin.AppendVarint(body, int32(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	kb.Records = body
	kb.Length = int32(recordfmt.KafkaBatchHeaderSize - 12 + len(body))
	start := len(dst)
	dst = kb.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+17:], recordfmt.KafkaBatchCRC(dst[start:]))
	return dst
}

// kafkaRecord is a message as a Kafka record (without offset and time).
func kafkaRecord(m *dmsv1.Message) kmsg.Record {
	r := kmsg.Record{Value: m.GetBody()}
	if m.GetOrderingKey() != "" {
		r.Key = []byte(m.GetOrderingKey())
	}
	names := make([]string, 0, len(m.GetAttributes()))
	for name := range m.GetAttributes() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r.Headers = append(r.Headers, kmsg.Header{Key: name, Value: []byte(attributeText(m.GetAttributes()[name]))})
	}
	if len(m.GetTags()) > 0 {
		r.Headers = append(r.Headers, kmsg.Header{Key: recordfmt.TagsHeader, Value: []byte(strings.Join(m.GetTags(), ","))})
	}
	return r
}

// attributeText is an attribute value as a header value.
func attributeText(v *dmsv1.AttributeValue) string {
	switch k := v.GetKind().(type) {
	case *dmsv1.AttributeValue_StringValue:
		return k.StringValue
	case *dmsv1.AttributeValue_IntValue:
		return strconv.FormatInt(k.IntValue, 10)
	case *dmsv1.AttributeValue_DoubleValue:
		return strconv.FormatFloat(k.DoubleValue, 'g', -1, 64)
	case *dmsv1.AttributeValue_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}
