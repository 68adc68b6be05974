package kafka_test

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawBatch encodes an uncompressed record batch of a producer (id -1: not
// idempotent) with the values given, as a producer sends it.
func rawBatch(t testing.TB, producerID int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	now := time.Now().UnixMilli()
	var body, scratch []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		scratch = r.AppendTo(scratch[:0])
		body = kbin.AppendVarint(body, int32(len(scratch)-1))
		body = append(body, scratch[1:]...)
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(len(values) - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: producerID, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(len(values)), Records: body,
		Length: int32(49 + len(body)),
	}
	if producerID < 0 {
		b.ProducerEpoch, b.FirstSequence = -1, -1
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// produceRequest is a Produce v9 with acks=all of one partition's records.
func produceRequest(topic string, partition int32, recs []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, recs
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func produceRaw(c *rawClient, topic string, recs []byte) kmsg.ProduceResponseTopicPartition {
	return c.roundTrip(produceRequest(topic, 0, recs)).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
}

// highWatermark returns partition 0's high watermark.
func highWatermark(t testing.TB, c *rawClient, topic string) int64 {
	t.Helper()
	p := c.roundTrip(fetchRequest(topic, 0, 0)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Zero(t, p.ErrorCode)
	return p.HighWatermark
}

// TestIdempotentRetriesAreStoredOnce sends a batch of an idempotent
// producer twice (a retry), then one that skips sequence numbers, then one
// of an older epoch.
func TestIdempotentRetriesAreStoredOnce(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	ip := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	require.Zero(t, ip.ErrorCode)
	require.GreaterOrEqual(t, ip.ProducerID, int64(0))
	ip2 := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	require.NotEqual(t, ip.ProducerID, ip2.ProducerID, "ids are never handed out twice")
	txn := "txn"
	refused := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, TransactionalID: &txn, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	require.Equal(t, kerr.TransactionalIDAuthorizationFailed.Code, refused.ErrorCode)

	topic := "idem"
	first := produceRaw(c, topic, rawBatch(t, ip.ProducerID, 0, 0, "a", "b", "c"))
	require.Zero(t, first.ErrorCode)
	retry := produceRaw(c, topic, rawBatch(t, ip.ProducerID, 0, 0, "a", "b", "c"))
	require.Zero(t, retry.ErrorCode)
	require.Equal(t, first.BaseOffset, retry.BaseOffset)
	next := produceRaw(c, topic, rawBatch(t, ip.ProducerID, 0, 3, "d"))
	require.Zero(t, next.ErrorCode)
	require.Equal(t, int64(3), next.BaseOffset)
	gap := produceRaw(c, topic, rawBatch(t, ip.ProducerID, 0, 9, "z"))
	require.Equal(t, kerr.OutOfOrderSequenceNumber.Code, gap.ErrorCode)

	// KIP-360: the producer starts over at the next epoch; the old epoch's
	// batches are refused from then on.
	bumped := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: ip.ProducerID, ProducerEpoch: 0}).(*kmsg.InitProducerIDResponse)
	require.Equal(t, ip.ProducerID, bumped.ProducerID)
	require.Equal(t, int16(1), bumped.ProducerEpoch)
	require.Zero(t, produceRaw(c, topic, rawBatch(t, ip.ProducerID, 1, 0, "e")).ErrorCode)
	old := produceRaw(c, topic, rawBatch(t, ip.ProducerID, 0, 4, "y"))
	require.Equal(t, kerr.InvalidProducerEpoch.Code, old.ErrorCode)
	require.Equal(t, int64(5), highWatermark(t, c, topic), "a, b, c, d, e: each once")
}

// TestBadBatchesAreRefusedWhole sends batches a broker must refuse and
// checks the error code and that nothing was stored.
func TestBadBatchesAreRefusedWhole(t *testing.T) {
	srv := startServer(t, "-kafka.max-message-bytes", "4096")
	c := dialRaw(t, srv.KafkaAddr)
	topic := "bad"
	require.Zero(t, produceRaw(c, topic, rawBatch(t, -1, 0, 0, "ok")).ErrorCode)

	good := rawBatch(t, -1, 0, 0, "x", "y")
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	badCRC := append([]byte(nil), good...)
	badCRC[17] ^= 0xff
	lying := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(lying[8:], uint32(len(good)))
	big := make([]string, 0, 10)
	for range 10 {
		big = append(big, string(make([]byte, 500)))
	}
	twoBatches := append(append([]byte(nil), good...), good...)
	control := rawBatchWithAttributes(t, 0x20)
	transactional := rawBatchWithAttributes(t, 0x10)
	unknownCodec := rawBatchWithAttributes(t, 0x07)
	oldMagic := append([]byte(nil), good...)
	oldMagic[16] = 1
	countLies := rawBatch(t, -1, 0, 0, "x", "y")
	binary.BigEndian.PutUint32(countLies[57:], 3)
	binary.BigEndian.PutUint32(countLies[23:], 2)
	binary.BigEndian.PutUint32(countLies[17:], crc32.Checksum(countLies[21:], crc32.MakeTable(crc32.Castagnoli)))

	for _, tc := range []struct {
		name string
		recs []byte
		code int16
	}{
		{"flipped record byte", flipped, kerr.CorruptMessage.Code},
		{"wrong CRC", badCRC, kerr.CorruptMessage.Code},
		{"lying batch length", lying, kerr.CorruptMessage.Code},
		{"truncated", good[:len(good)-3], kerr.CorruptMessage.Code},
		{"header only", good[:61], kerr.CorruptMessage.Code},
		{"empty", nil, kerr.CorruptMessage.Code},
		{"two batches", twoBatches, kerr.CorruptMessage.Code},
		{"record count lies", countLies, kerr.CorruptMessage.Code},
		{"magic 1", oldMagic, kerr.CorruptMessage.Code},
		{"oversize", rawBatch(t, -1, 0, 0, big...), kerr.MessageTooLarge.Code},
		{"control batch", control, kerr.InvalidRecord.Code},
		{"transactional", transactional, kerr.TransactionalIDAuthorizationFailed.Code},
		{"unknown codec", unknownCodec, kerr.CorruptMessage.Code},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := produceRaw(c, topic, tc.recs)
			require.Equal(t, tc.code, p.ErrorCode, "%v", p.ErrorMessage)
			require.NotNil(t, p.ErrorMessage)
			require.Equal(t, int64(1), highWatermark(t, c, topic), "nothing stored")
		})
	}
	// Other versions and acks: Produce v2 (magic 0/1 message sets) and acks 2.
	req := produceRequest(topic, 0, good)
	req.Version = 2
	require.Equal(t, kerr.UnsupportedForMessageFormat.Code, c.roundTrip(req).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
	req = produceRequest(topic, 0, good)
	req.Acks = 2
	require.Equal(t, kerr.InvalidRequiredAcks.Code, c.roundTrip(req).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
	require.Equal(t, int64(1), highWatermark(t, c, topic))
	// An unknown partition.
	require.Equal(t, kerr.UnknownTopicOrPartition.Code, c.roundTrip(produceRequest(topic, 99, good)).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
}

// rawBatchWithAttributes is a valid one-record batch with attribute bits
// set (the CRC matches).
func rawBatchWithAttributes(t testing.TB, attrs int16) []byte {
	b := rawBatch(t, -1, 0, 0, "x")
	binary.BigEndian.PutUint16(b[21:], uint16(attrs))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// TestBadFramesCloseTheConnection sends frames a broker cannot parse: the
// connection is closed, the server lives on, and nothing is stored.
func TestBadFramesCloseTheConnection(t *testing.T) {
	srv := startServer(t)
	topic := "frames"
	c := dialRaw(t, srv.KafkaAddr)
	require.Zero(t, produceRaw(c, topic, rawBatch(t, -1, 0, 0, "ok")).ErrorCode)

	valid := kmsg.NewRequestFormatter().AppendRequest(nil, produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "z")), 1)
	unknownKey := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(unknownKey[4:], 999)
	unknownVersion := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(unknownVersion[6:], 99)
	shortBody := append([]byte(nil), valid[:len(valid)-10]...)
	binary.BigEndian.PutUint32(shortBody, uint32(len(shortBody)-4))
	huge := []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 9}
	negative := []byte{0xff, 0xff, 0xff, 0xf0}
	tiny := []byte{0, 0, 0, 2, 0, 0}
	for _, tc := range []struct {
		name  string
		frame []byte
		// half-closed: the client stops writing after the frame, so a
		// frame promising more than it has ends in EOF.
		close bool
	}{
		{"unknown API key", unknownKey, false},
		{"unknown version", unknownVersion, false},
		{"body shorter than its API needs", shortBody, false},
		{"frame longer than the limit", huge, false},
		{"negative length", negative, false},
		{"shorter than a header", tiny, false},
		{"length promises more than sent", valid[:len(valid)-5], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := dialRaw(t, srv.KafkaAddr)
			_, err := bad.conn.Write(tc.frame)
			require.NoError(t, err)
			if tc.close {
				require.NoError(t, bad.conn.(interface{ CloseWrite() error }).CloseWrite())
			}
			require.True(t, bad.closed(), "the connection is closed")
			require.Equal(t, int64(1), highWatermark(t, c, topic), "nothing stored")
		})
	}
}

// TestProduceErrorsPerPartitionAndAcksZero checks that one request's bad
// partition does not keep its good one from being stored, and that an
// acks=0 produce that fails closes the connection (it has no answer to
// carry the error), as Kafka does, while one that succeeds gets no answer.
func TestProduceErrorsPerPartitionAndAcksZero(t *testing.T) {
	srv := startServer(t)
	topic := "mixed"
	c := dialRaw(t, srv.KafkaAddr)
	bad := rawBatch(t, -1, 0, 0, "bad")
	bad[len(bad)-1] ^= 1
	req := produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "good"))
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = 1, bad
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
	ps := c.roundTrip(req).(*kmsg.ProduceResponse).Topics[0].Partitions
	require.Zero(t, ps[0].ErrorCode)
	require.Equal(t, kerr.CorruptMessage.Code, ps[1].ErrorCode)
	require.Equal(t, int64(1), highWatermark(t, c, topic))
	p1 := c.roundTrip(fetchRequest(topic, 1, 0)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Zero(t, p1.HighWatermark, "nothing of the bad batch")

	// acks=0: a good batch gets no answer (the next answer is the fetch's),
	// a bad one closes the connection.
	quiet := produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "quiet"))
	quiet.Acks = 0
	c.send(quiet)
	require.Equal(t, int64(2), highWatermark(t, c, topic))
	loud := produceRequest(topic, 0, bad)
	loud.Acks = 0
	c.send(loud)
	// Were the connection still open, this request would be answered.
	_, _ = c.conn.Write(kmsg.NewRequestFormatter().AppendRequest(nil, &kmsg.ApiVersionsRequest{Version: 0}, 99))
	require.True(t, c.closed(), "the connection is closed")
	require.Equal(t, int64(2), highWatermark(t, dialRaw(t, srv.KafkaAddr), topic))
}
