package recordfmt_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/recordfmt"
)

// batch encodes records as a Kafka batch compressed with codec (the raw
// records section is given when compressed is not nil).
func batch(t testing.TB, codec int16, compressed func([]byte) []byte, recs ...kmsg.Record) []byte {
	t.Helper()
	var body, scratch []byte
	for i := range recs {
		recs[i].OffsetDelta = int32(i)
		scratch = recs[i].AppendTo(scratch[:0])
		body = kbin.AppendVarint(body, int32(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	if compressed != nil {
		body = compressed(body)
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: codec, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: 1000, MaxTimestamp: 1000 + int64(len(recs)), ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs)), Records: body, Length: int32(49 + len(body)),
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

func compressWith(t testing.TB, codec kgo.CompressionCodec) func([]byte) []byte {
	return func(raw []byte) []byte {
		c, err := kgo.DefaultCompressor(codec)
		require.NoError(t, err)
		out, _ := c.Compress(new(bytes.Buffer), raw)
		return append([]byte(nil), out...)
	}
}

// TestKafkaBatchesDecodeAsMessages decodes batches of every codec (and
// snappy in the xerial framing Java writes) into messages: value → body,
// key → ordering key, headers → attributes, dms.tags → tags, the offset
// filter and the limit, and ids that stay the same from read to read.
func TestKafkaBatchesDecodeAsMessages(t *testing.T) {
	recs := func() []kmsg.Record {
		return []kmsg.Record{
			{Key: []byte("k1"), Value: []byte("v1"), TimestampDelta64: 0, Headers: []kmsg.Header{{Key: "a", Value: []byte("x")}, {Key: "dms.tags", Value: []byte("t1, t2")}}},
			{Key: []byte{0xff, 0xfe}, Value: []byte("v2"), TimestampDelta64: 1, Headers: []kmsg.Header{{Key: "bin", Value: []byte{0xc3}}}},
			{Value: nil, TimestampDelta64: 2},
		}
	}
	xerial := func(raw []byte) []byte {
		out := append([]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}, 0, 0, 0, 1, 0, 0, 0, 1)
		for _, chunk := range [][]byte{raw[:len(raw)/2], raw[len(raw)/2:]} {
			enc := s2.EncodeSnappy(nil, chunk)
			out = binary.BigEndian.AppendUint32(out, uint32(len(enc)))
			out = append(out, enc...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		codec int16
		comp  func([]byte) []byte
	}{
		{"none", 0, nil}, {"gzip", 1, compressWith(t, kgo.GzipCompression())}, {"snappy", 2, compressWith(t, kgo.SnappyCompression())},
		{"snappy-xerial", 2, xerial}, {"lz4", 3, compressWith(t, kgo.Lz4Compression())}, {"zstd", 4, compressWith(t, kgo.ZstdCompression())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &storagev1.RecordBatch{BaseOffset: 40, RecordCount: 3, Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, Data: batch(t, tc.codec, tc.comp, recs()...)}
			out, err := recordfmt.Decode(sb, 0, 0, nil)
			require.NoError(t, err)
			require.Len(t, out, 3)
			m := out[0].GetRecord().GetMessage()
			require.Equal(t, int64(40), out[0].GetOffset())
			require.Equal(t, int64(1000), out[0].GetRecord().GetTimestampMs())
			require.Equal(t, "v1", string(m.GetBody()))
			require.Equal(t, "k1", m.GetOrderingKey())
			require.Equal(t, "x", m.GetAttributes()["a"].GetStringValue())
			require.Equal(t, []string{"t1", "t2"}, m.GetTags())
			m = out[1].GetRecord().GetMessage()
			require.Equal(t, "//4=", m.GetOrderingKey(), "a key that is not UTF-8, in base64")
			require.Equal(t, "base64", m.GetAttributes()[recordfmt.KeyEncodingAttribute].GetStringValue())
			require.Equal(t, "ww==", m.GetAttributes()["bin"].GetStringValue())
			require.Equal(t, "bin", m.GetAttributes()[recordfmt.Base64HeadersAttribute].GetStringValue())
			require.Equal(t, int64(1002), out[2].GetRecord().GetTimestampMs())
			require.NotNil(t, out[2].GetRecord().GetMessage().GetBody())

			again, err := recordfmt.Decode(sb, 41, 1, nil)
			require.NoError(t, err)
			require.Len(t, again, 1)
			require.Equal(t, int64(41), again[0].GetOffset())
			require.Equal(t, out[1].GetRecord().GetMessageId(), again[0].GetRecord().GetMessageId())
			require.NotEqual(t, out[0].GetRecord().GetMessageId(), out[1].GetRecord().GetMessageId())
		})
	}
}

// TestMalformedKafkaBatches checks that damaged or hostile batches are
// errors, never panics or unbounded allocations.
func TestMalformedKafkaBatches(t *testing.T) {
	good := batch(t, 0, nil, kmsg.Record{Value: []byte("v")})
	// A gzip batch whose records decompress to 100 MiB of zeros.
	bomb := batch(t, 1, func([]byte) []byte {
		return compressWith(t, kgo.GzipCompression())(make([]byte, 100<<20))
	}, kmsg.Record{Value: []byte("v")})
	notGzip := batch(t, 1, func(raw []byte) []byte { return raw }, kmsg.Record{Value: []byte("v")})
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"bad CRC":   append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
		"bomb":      bomb,
		"not gzip":  notGzip,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := recordfmt.Decode(&storagev1.RecordBatch{Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, Data: data}, 0, 0, nil)
			require.Error(t, err)
		})
	}
}

// FuzzKafkaBatchDecode decodes arbitrary bytes stored as a Kafka batch:
// never a panic; a batch that decodes gives exactly its record count of
// records at consecutive offsets from the base.
func FuzzKafkaBatchDecode(f *testing.F) {
	for _, codec := range []struct {
		id int16
		c  kgo.CompressionCodec
	}{{1, kgo.GzipCompression()}, {2, kgo.SnappyCompression()}, {3, kgo.Lz4Compression()}, {4, kgo.ZstdCompression()}} {
		f.Add(batch(f, codec.id, compressWith(f, codec.c), kmsg.Record{Key: []byte("k"), Value: []byte("v"), Headers: []kmsg.Header{{Key: "dms.tags", Value: []byte("a")}}}, kmsg.Record{Value: []byte("w")}))
	}
	f.Add(batch(f, 0, nil, kmsg.Record{Value: []byte("plain")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := &storagev1.RecordBatch{BaseOffset: 100, Format: storagev1.BatchFormat_BATCH_FORMAT_KAFKA, Data: data}
		out, err := recordfmt.Decode(sb, 0, 0, nil)
		if err != nil {
			return
		}
		b, err := recordfmt.ParseKafkaBatch(data)
		require.NoError(t, err)
		if b.Attributes&recordfmt.KafkaControl != 0 {
			require.Empty(t, out)
			return
		}
		require.Len(t, out, int(b.NumRecords))
		for i, r := range out {
			require.Equal(t, int64(100+i), r.GetOffset())
			require.NotNil(t, r.GetRecord().GetMessage())
		}
	})
}
