package kafka

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkCheckProducedBatch checks a batch of 100 uncompressed 1 KiB
// records, what every produce pays before its append.
func BenchmarkCheckProducedBatch(b *testing.B) {
	var body, scratch []byte
	value := make([]byte, 1024)
	for i := range 100 {
		r := kmsg.Record{OffsetDelta: int32(i), Value: value}
		scratch = r.AppendTo(scratch[:0])
		body = kbin.AppendVarint(body, int32(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	kb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: 99, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 100, Records: body, Length: int32(49 + len(body))}
	data := kb.AppendTo(nil)
	binary.BigEndian.PutUint32(data[17:], crc32.Checksum(data[21:], crc32.MakeTable(crc32.Castagnoli)))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := checkProducedBatch(data); err != nil {
			b.Fatal(err)
		}
	}
}
