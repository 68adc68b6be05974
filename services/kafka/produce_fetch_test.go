package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newClient returns a franz-go client of a server, closed with the test.
func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.MetadataMinAge(100 * time.Millisecond), kgo.AllowAutoTopicCreation()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// produceAll produces records synchronously and fails the test on an error.
func produceAll(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, recs...)
	require.NoError(t, res.FirstErr())
	return recs
}

// consumeN reads n records of a topic's partitions from their start with
// a client of its own.
func consumeN(t testing.TB, addr, topic string, partitions []int32, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for _, p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl := newClient(t, addr, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "got %d of %d records", len(out), n)
		for _, e := range fs.Errors() {
			require.NoError(t, e.Err, "fetching %s/%d", e.Topic, e.Partition)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func records(topic string, n int, prefix string) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		out[i] = &kgo.Record{
			Topic: topic, Key: fmt.Appendf(nil, "k%d", i%3), Value: fmt.Appendf(nil, "%s-%d", prefix, i),
			Headers: []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "v%d", i)}},
		}
	}
	return out
}

// TestProduceWithEachAcksAndConsume produces with acks 0, 1 and all and
// reads every record back, with its key, headers and offsets.
func TestProduceWithEachAcksAndConsume(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name string
		acks kgo.Acks
		ht   bool
	}{{"acks0", kgo.NoAck(), false}, {"acks1", kgo.LeaderAck(), false}, {"acksall", kgo.AllISRAcks(), false}, {"acksall-ht", kgo.AllISRAcks(), true}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "t-" + tc.name
			if tc.ht {
				mode := "KAFKA_HT"
				created, err := kadm.NewClient(newClient(t, srv.KafkaAddr)).CreateTopics(ctxT(t), 3, -1, map[string]*string{"dms.queue.mode": &mode}, topic)
				require.NoError(t, err)
				require.NoError(t, created[topic].Err)
			}
			opts := []kgo.Opt{kgo.RequiredAcks(tc.acks), kgo.DefaultProduceTopic(topic)}
			if tc.acks != kgo.AllISRAcks() {
				opts = append(opts, kgo.DisableIdempotentWrite())
			}
			cl := newClient(t, srv.KafkaAddr, opts...)
			sent := produceAll(t, cl, records(topic, 20, tc.name)...)
			got := consumeN(t, srv.KafkaAddr, topic, []int32{0, 1, 2}, len(sent))
			require.Len(t, got, len(sent))
			byValue := map[string]*kgo.Record{}
			for _, r := range got {
				byValue[string(r.Value)] = r
			}
			for _, s := range sent {
				r := byValue[string(s.Value)]
				require.NotNil(t, r, "record %s not consumed", s.Value)
				require.Equal(t, string(s.Key), string(r.Key))
				require.Equal(t, s.Headers, r.Headers)
				require.Equal(t, s.Partition, r.Partition)
				if tc.name != "acks0" {
					require.Equal(t, s.Offset, r.Offset, "the produce answer's offset is where the record is")
				}
			}
		})
	}
}

// TestCompressedBatchesAreStoredAsSent produces with every codec, reads the
// records back with a consumer, and checks with a raw fetch that the
// stored batch still has the producer's codec (nothing recompressed).
func TestCompressedBatchesAreStoredAsSent(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name  string
		codec kgo.CompressionCodec
		attr  int16
	}{{"none", kgo.NoCompression(), 0}, {"gzip", kgo.GzipCompression(), 1}, {"snappy", kgo.SnappyCompression(), 2}, {"lz4", kgo.Lz4Compression(), 3}, {"zstd", kgo.ZstdCompression(), 4}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "codec-" + tc.name
			cl := newClient(t, srv.KafkaAddr, kgo.ProducerBatchCompression(tc.codec), kgo.DefaultProduceTopic(topic),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			recs := records(topic, 50, tc.name)
			produceAll(t, cl, recs...)
			got := consumeN(t, srv.KafkaAddr, topic, []int32{0}, len(recs))
			for i, r := range got {
				require.Equal(t, string(recs[i].Value), string(r.Value))
				require.Equal(t, int64(i), r.Offset)
			}

			c := dialRaw(t, srv.KafkaAddr)
			resp := c.roundTrip(fetchRequest(topic, 0, 0)).(*kmsg.FetchResponse)
			p := resp.Topics[0].Partitions[0]
			require.Zero(t, p.ErrorCode)
			require.Equal(t, int64(len(recs)), p.HighWatermark)
			var b kmsg.RecordBatch
			require.NoError(t, b.ReadFrom(p.RecordBatches))
			require.Equal(t, tc.attr, b.Attributes&7, "stored with the producer's codec")
		})
	}
}

// fetchRequest is a Fetch v12 of one partition that does not wait.
func fetchRequest(topic string, partition int32, offset int64) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = 12, 0, 1, 50<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 50<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// TestFetchOffsetOutOfRange checks offsets past the end.
func TestFetchOffsetOutOfRange(t *testing.T) {
	srv := startServer(t)
	topic := "oor"
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceAll(t, cl, records(topic, 3, "x")...)
	c := dialRaw(t, srv.KafkaAddr)
	p := c.roundTrip(fetchRequest(topic, 0, 4)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Equal(t, kerr.OffsetOutOfRange.Code, p.ErrorCode)
	require.NotNil(t, p.RecordBatches, "records are empty, never null (kafka-python cannot read null)")
	p = c.roundTrip(fetchRequest(topic, 0, 3)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Zero(t, p.ErrorCode)
	require.Empty(t, p.RecordBatches)
	require.NotNil(t, p.RecordBatches, "records are empty, never null (kafka-python cannot read null)")
	require.Equal(t, int64(3), p.HighWatermark)
	require.Equal(t, int64(3), p.LastStableOffset)
	require.Zero(t, p.LogStartOffset)
}

// TestFetchLongPollAndByteLimits checks that a fetch at the end waits for
// a record produced after it was sent, that a partition's byte limit still
// returns the first batch whole (KIP-74) and no more, and that a partition
// left out by the request's byte limit still gets its offsets.
func TestFetchLongPollAndByteLimits(t *testing.T) {
	srv := startServer(t)
	topic := "poll"
	prod := dialRaw(t, srv.KafkaAddr)
	for i := range 3 {
		require.Zero(t, produceRaw(prod, topic, rawBatch(t, -1, 0, 0, fmt.Sprintf("batch-%d-a", i), fmt.Sprintf("batch-%d-b", i))).ErrorCode)
	}

	// One byte allowed: the first batch, whole.
	c := dialRaw(t, srv.KafkaAddr)
	req := fetchRequest(topic, 0, 0)
	req.Topics[0].Partitions[0].PartitionMaxBytes = 1
	p := c.roundTrip(req).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Zero(t, p.ErrorCode)
	var b kmsg.RecordBatch
	require.NoError(t, b.ReadFrom(p.RecordBatches))
	require.Equal(t, int(b.Length)+12, len(p.RecordBatches), "one batch")
	require.Equal(t, int64(6), p.HighWatermark)

	// The request's limit spent on the first partition: the second gets
	// no records but its offsets.
	req = fetchRequest(topic, 0, 0)
	req.MaxBytes = 1
	second := kmsg.NewFetchRequestTopicPartition()
	second.Partition, second.FetchOffset, second.PartitionMaxBytes = 0, 2, 1<<20
	req.Topics[0].Partitions = append(req.Topics[0].Partitions, second)
	ps := c.roundTrip(req).(*kmsg.FetchResponse).Topics[0].Partitions
	require.NotEmpty(t, ps[0].RecordBatches)
	require.Empty(t, ps[1].RecordBatches)
	require.Equal(t, int64(6), ps[1].HighWatermark)

	// A long poll at the end is answered by the next produce.
	req = fetchRequest(topic, 0, 6)
	req.MaxWaitMillis = 60000
	corr := c.send(req)
	require.Zero(t, produceRaw(prod, topic, rawBatch(t, -1, 0, 0, "late")).ErrorCode)
	resp, err := c.receive(req, corr)
	require.NoError(t, err)
	p = resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	require.Zero(t, p.ErrorCode)
	require.NoError(t, b.ReadFrom(p.RecordBatches))
	require.Equal(t, int64(6), b.FirstOffset)
	require.Equal(t, int64(7), p.HighWatermark)
}
